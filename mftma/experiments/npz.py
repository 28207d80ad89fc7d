"""Pickle-free ``.npz`` files: written atomically, read with clear errors."""
from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from mftma.errors import DataFileError
from mftma.atomic import atomic_write


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz`` without pickled objects, atomically.

    The name is used as given (no ``.npz`` is appended), and a failed write leaves a previous file intact.

    Raises
    ------
    DataFileError
        Writing failed, e.g. because the disk is full.
    """

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **{key: np.asarray(value) for key, value in arrays.items()})

    atomic_write(path, write)


def load_npz(path: str | Path, required: Iterable[str], what: str) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file, refusing pickled objects.

    Parameters
    ----------
    path : str or Path
        The file.
    required : iterable of str
        Keys the file must contain.
    what : str
        What the file should be (e.g. ``"corruption record"``), for error messages.

    Raises
    ------
    DataFileError
        The file is missing, not an ``.npz`` archive, holds pickled objects, or lacks a required key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{what} file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataFileError(f"{path} is not a readable {what} (.npz without pickled objects): {error}") from None
    missing = sorted(set(required) - set(arrays))
    if missing:
        raise DataFileError(f"{path} is not a {what}: missing {', '.join(missing)}")
    return arrays
