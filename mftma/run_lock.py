"""An exclusive lock on a run directory, held by every process that writes into it.

Training, activation caching, analysis, rollback and the pipelines built from them each hold
:func:`run_directory_lock` while they write into ``RUN_DIR``, so that two of them never interleave
their checkpoints, resume state, cache entries or result tables; the second one fails at once with a
:class:`~mftma.errors.DataFileError` that names the holder. Readers (``Run``, plotting) do not lock.

This module sits beside :mod:`mftma.atomic` rather than in ``experiments/``: like atomic writes, it
is a file-system rule shared by the writers in ``experiments/``, ``cache/`` and ``pipeline/``, and it
depends on nothing but :mod:`mftma.errors`.

The lock is ``fcntl.flock`` on ``RUN_DIR/.mftma.lock``: advisory (only mftma honours it) and owned by
the process, so the operating system releases it when the process ends in any way, SIGKILL included;
no stale lock is ever left. While held, the file describes the holder (activity, pid, host, start
time); the holder deletes it before releasing the lock, and a process that locked a file which was
deleted meanwhile retries on the new one. Within one process the lock is re-entrant (a per-process
count per directory), so a pipeline that holds it may call ``train``, ``cache_activations``... on
the same directory; it excludes other processes, not other threads of the holder.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mftma.errors import DataFileError

try:
    import fcntl
except ImportError:  # Windows has no flock: run directories are not locked there.
    fcntl = None

#: Name of the lock file inside a run directory (present only while a writer holds the lock).
LOCK_FILE = ".mftma.lock"
#: Attempts to lock the current lock file when holders keep replacing it under us.
_ATTEMPTS = 10


@dataclass
class _Holding:
    """This process's lock on one directory: the locked file's descriptor and the nesting depth."""

    descriptor: int
    path: Path
    depth: int = 1


_held: dict[Path, _Holding] = {}
_registry_guard = threading.Lock()


@contextlib.contextmanager
def run_directory_lock(run_dir, activity: str, *, create: bool = False) -> Iterator[None]:
    """Hold the exclusive lock of ``run_dir`` for the ``with`` block (re-entrant within a process).

    Parameters
    ----------
    run_dir : str, path-like or Run
        The run directory (a :class:`~mftma.experiments.run.Run` stands for its ``path``).
    activity : str
        What the holder does (``"training"``, ``"activation caching"``...), shown to other processes.
    create : bool
        Create ``run_dir`` if missing. Otherwise a missing directory is not locked: there is nothing
        in it to protect, and the caller reports the missing run in its own words.

    Raises
    ------
    DataFileError
        Another process holds the lock; the message names it.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with run_directory_lock(folder, "training"):
    ...     with run_directory_lock(folder, "activation caching"):  # re-entrant
    ...         pass
    """
    directory = Path(getattr(run_dir, "path", run_dir))
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None or not directory.is_dir():
        yield
        return
    key = directory.resolve()
    _acquire(key, directory, activity)
    try:
        yield
    finally:
        _release(key)


def _acquire(key: Path, directory: Path, activity: str) -> None:
    with _registry_guard:
        holding = _held.get(key)
        if holding is not None:
            holding.depth += 1
            return
        path = directory / LOCK_FILE
        descriptor = _lock_current_file(path, directory)
        _describe(descriptor, activity)
        _held[key] = _Holding(descriptor, path)


def _release(key: Path) -> None:
    with _registry_guard:
        holding = _held[key]
        holding.depth -= 1
        if holding.depth:
            return
        del _held[key]
        with contextlib.suppress(OSError):  # e.g. the directory was removed meanwhile
            holding.path.unlink()  # while still locked, so no other process is using this file
        os.close(holding.descriptor)  # releases the lock


def _lock_current_file(path: Path, directory: Path) -> int:
    """Open and lock ``path``; retry when the file was deleted by its previous holder meanwhile."""
    for _ in range(_ATTEMPTS):
        descriptor = _open(path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            message = _lock_failure(directory, descriptor, error)
            os.close(descriptor)
            raise DataFileError(message) from None
        if _is_current(descriptor, path):
            return descriptor
        os.close(descriptor)
    raise DataFileError(f"could not lock the run directory {directory}: its lock file {path} keeps changing")


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise DataFileError(f"cannot open the lock file {path}: {error.strerror or error}") from None


def _lock_failure(directory: Path, descriptor: int, error: OSError) -> str:
    """The message for a failed ``flock``: who holds the lock, or why locking failed."""
    if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        return _in_use_message(directory, _read_description(descriptor))
    return f"cannot lock the run directory {directory}: {error.strerror or error}"


def _is_current(descriptor: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``descriptor`` (a released lock file is deleted)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _describe(descriptor: int, activity: str) -> None:
    """Write the holder's description into the locked file."""
    description = {"activity": activity, "pid": os.getpid(), "host": socket.gethostname(),
                   "since": datetime.now().isoformat(sep=" ", timespec="seconds")}
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(description).encode(), 0)


def _read_description(descriptor: int) -> dict:
    """The holder's description, or ``{}`` if it is not written yet or unreadable."""
    try:
        description = json.loads(os.pread(descriptor, 4096, 0).decode())
    except (OSError, ValueError):
        return {}
    return description if isinstance(description, dict) else {}


def _in_use_message(directory: Path, holder: dict) -> str:
    if {"activity", "pid", "host", "since"} <= holder.keys():
        who = (f"{holder['activity']} (pid {holder['pid']} on host {holder['host']}, "
               f"since {holder['since']})")
    else:
        who = "another mftma process (it has not described itself yet)"
    return f"run directory {directory} is in use by {who}; wait for it to finish or choose another directory"


def _forget_inherited_locks() -> None:
    """In a forked child: close the parent's lock files (the parent keeps its locks) and start afresh."""
    global _registry_guard
    _registry_guard = threading.Lock()
    for holding in _held.values():
        with contextlib.suppress(OSError):
            os.close(holding.descriptor)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_locks)
