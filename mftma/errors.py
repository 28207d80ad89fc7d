"""Exceptions that mftma raises for bad input (the CLI prints them without a traceback), and its warning."""


class MFTMAError(Exception):
    """Base class of the errors mftma raises on purpose."""


class InputError(MFTMAError, ValueError):
    """An argument has the wrong shape, dtype, size or values (NaN, inf, too few samples)."""


class DataFileError(MFTMAError, OSError):
    """A file is missing, corrupt, foreign to mftma, or stale with respect to its run."""


class TrainingDivergedError(MFTMAError):
    """Training produced a non-finite loss or weights; the run directory keeps its last good epoch."""


class MFTMAWarning(UserWarning):
    """A result is computed but may mislead (for instance an outlier radius); the message says why."""
