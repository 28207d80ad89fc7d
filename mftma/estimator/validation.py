"""Input checks of the estimator, done once at its public functions.

Everything past these checks may assume float64, finite values and consistent shapes.
"""
from __future__ import annotations

import numbers

import numpy as np

from mftma.errors import InputError


def check_finite(matrix: np.ndarray, name: str) -> None:
    """Raise :class:`InputError` naming ``name`` if ``matrix`` holds NaN or infinite values."""
    if not np.isfinite(matrix).all():
        raise InputError(f"{name} contains NaN or infinite values")


def _as_float_matrix(array, name: str, finite: bool = True) -> np.ndarray:
    """``array`` as a 2-D float64 array (copied only when the dtype differs), finite unless ``finite`` is False."""
    try:
        matrix = np.asarray(array)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} is not an array: {error}") from error
    if matrix.dtype == object or not (
        np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)
    ):
        raise InputError(f"{name} must hold real numbers, got dtype {matrix.dtype}")
    if matrix.ndim != 2:
        raise InputError(f"{name} must be 2-D (features x samples), got shape {matrix.shape}")
    matrix = np.asarray(matrix, dtype=np.float64)
    if finite:
        check_finite(matrix, name)
    return matrix


def check_manifolds(manifolds, finite: bool = True) -> list[np.ndarray]:
    """Validate P manifolds given as a list of (N, M_p) arrays or one (P, N, M) array.

    Parameters
    ----------
    manifolds : sequence of array_like (N, M_p), or array_like (P, N, M)
        Features x samples per manifold; M_p may differ, N may not. float32 is accepted.
    finite : bool
        Check that the values are finite. A caller that computes every manifold's mean anyway may
        pass False and call :func:`check_finite` on a manifold whose mean is not finite.

    Returns
    -------
    list of P float64 ndarrays, each (N, M_p)

    Raises
    ------
    InputError
        If there are fewer than 2 manifolds, a manifold is not 2-D, has fewer than 2 samples,
        non-numeric or (if ``finite``) non-finite values, or the feature counts differ.

    Examples
    --------
    >>> [m.shape for m in check_manifolds(np.zeros((3, 5, 4), dtype=np.float32))]
    [(5, 4), (5, 4), (5, 4)]
    """
    if isinstance(manifolds, np.ndarray) and manifolds.ndim != 3:
        raise InputError(f"manifolds as one array must be 3-D (P, N, M), got shape {manifolds.shape}")
    if not isinstance(manifolds, (np.ndarray, list, tuple)):
        raise InputError(f"manifolds must be a list of (N, M) arrays or a (P, N, M) array, got {type(manifolds)}")
    if len(manifolds) < 2:
        raise InputError(f"need at least 2 manifolds, got {len(manifolds)}")
    checked = [_as_float_matrix(m, f"manifold {p}", finite) for p, m in enumerate(manifolds)]
    features = checked[0].shape[0]
    for p, matrix in enumerate(checked):
        if matrix.shape[0] != features:
            raise InputError(
                f"manifold {p} has {matrix.shape[0]} features but manifold 0 has {features}; "
                "all manifolds must be (N, M_p) with the same N"
            )
        if matrix.shape[1] < 2:
            raise InputError(f"manifold {p} has {matrix.shape[1]} sample(s); each manifold needs at least 2")
    return checked


def check_points(points, name: str = "sD1") -> np.ndarray:
    """Validate one processed manifold (D+1, M) whose last row is the constant coordinate.

    Parameters
    ----------
    points : array_like, (D+1, M)
    name : str
        Argument name used in error messages.

    Returns
    -------
    ndarray of float64, (D+1, M)

    Raises
    ------
    InputError
        If it is not 2-D with at least 2 rows and 1 column, or holds non-finite values.
    """
    matrix = _as_float_matrix(points, name)
    if matrix.shape[0] < 2 or matrix.shape[1] < 1:
        raise InputError(f"{name} must be (D+1, M) with D >= 1 and M >= 1, got shape {matrix.shape}")
    return matrix


def check_kappa(kappa) -> float:
    """Validate the margin: a finite real number >= 0."""
    if isinstance(kappa, bool) or not isinstance(kappa, numbers.Real) or not np.isfinite(kappa) or kappa < 0:
        raise InputError(f"kappa must be a finite number >= 0, got {kappa!r}")
    return float(kappa)


def check_count(value, name: str) -> int:
    """Validate a count such as n_t or n_reps: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_t_vecs(t_vecs, dims: list[int], n_t: int) -> list[np.ndarray]:
    """Validate given t vectors: one (D_p+1, n_t) array per manifold.

    Parameters
    ----------
    t_vecs : sequence of array_like
    dims : list of int
        D_p + 1 of every manifold, after the dimension reduction (``min(N, M_p) + 1``).
    n_t : int
        Number of t vectors per manifold.

    Returns
    -------
    list of float64 ndarrays

    Raises
    ------
    InputError
        If the count or a shape does not match, or values are not finite.
    """
    if not isinstance(t_vecs, (list, tuple, np.ndarray)) or len(t_vecs) != len(dims):
        count = len(t_vecs) if isinstance(t_vecs, (list, tuple, np.ndarray)) else type(t_vecs).__name__
        raise InputError(f"t_vecs must be a list of {len(dims)} arrays (one per manifold), got {count}")
    checked = []
    for p, (t_vec, rows) in enumerate(zip(t_vecs, dims)):
        matrix = _as_float_matrix(t_vec, f"t_vecs[{p}]")
        if matrix.shape != (rows, n_t):
            raise InputError(
                f"t_vecs[{p}] must have shape (min(N, M_p) + 1, n_t) = {(rows, n_t)}, got {matrix.shape}"
            )
        checked.append(matrix)
    return checked


def manifolds_from_rows(rows: np.ndarray, P: int, M: int) -> list[np.ndarray]:
    """Split ``(P * M, N)`` rows, grouped manifold by manifold, into P contiguous ``(N, M)`` manifolds.

    The layout of a subset sample and of the activation cache (one row per example) turned into the
    estimator's (features x samples per manifold).

    Examples
    --------
    >>> [m.shape for m in manifolds_from_rows(np.zeros((6, 4)), P=2, M=3)]
    [(4, 3), (4, 3)]
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] != P * M:
        raise InputError(f"expected {P} x {M} = {P * M} rows of features, got an array shaped {rows.shape}")
    return [np.ascontiguousarray(block.T) for block in rows.reshape(P, M, rows.shape[1])]
