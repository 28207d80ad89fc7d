"""Atomic file writes: a reader sees either the previous version of a file or the complete new one.

Everything mftma writes (checkpoints, metrics, tables, figures, summaries) goes through here: the
content is written to a temporary file in the target's folder, flushed to disk, and renamed over the
target in one step. An interrupted or failed write (e.g. a full disk) leaves the previous file intact.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from mftma.errors import DataFileError


def _file_mode() -> int:
    """Permissions of a new file under the current umask (``mkstemp`` makes files private)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``.

    The temporary name starts with a dot and keeps ``path``'s suffix (numpy's ``savez`` and
    matplotlib's ``savefig`` look at it).

    Raises
    ------
    DataFileError
        Writing failed (e.g. the disk is full); ``path`` keeps its previous content.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> with atomic_path(target) as temporary:
    ...     _ = temporary.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except DataFileError:
        raise
    except OSError as error:
        raise DataFileError(
            f"could not write {path}: {error.strerror or error}; the previous version of the file is intact"
        ) from error
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)`` and move the result to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as temporary:
        write(temporary)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    atomic_write(path, lambda temporary: temporary.write_text(text))
