"""Total data dimension: participation ratio and explained-variance dimension (docs/method.md §2.9).

Both follow the reference implementation: the participation ratio uses the squared singular values of
the data centered over samples, without the smallest one; the explained-variance dimension counts the
principal components whose cumulative variance ratio stays within ``perc``, where, as in the
reference's PCA call, the features are the observations (so the data is also centered over features).
The spectra come from the Gram matrix of the smaller side, so nothing larger than the data is formed.
"""
from __future__ import annotations

import numpy as np

from mftma.errors import InputError
from mftma.estimator.validation import check_manifolds


def squared_singular_values(matrix: np.ndarray) -> np.ndarray:
    """Squared singular values of ``matrix``, largest first.

    Parameters
    ----------
    matrix : ndarray, (a, b)

    Returns
    -------
    ndarray, (min(a, b),)
        Eigenvalues of the Gram matrix of the smaller side, clipped at 0.
    """
    gram = matrix.T @ matrix if matrix.shape[1] <= matrix.shape[0] else matrix @ matrix.T
    return np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)


def participation_ratio(centered: np.ndarray) -> float:
    """``(sum l)^2 / sum l^2`` of the squared singular values ``l`` without the smallest one.

    Parameters
    ----------
    centered : ndarray, (N, T)
        Data centered over samples (columns).

    Returns
    -------
    float
    """
    spectrum = squared_singular_values(centered)[:-1]
    return float(spectrum.sum() ** 2 / np.sum(spectrum**2))


def explained_variance_dimension(centered: np.ndarray, perc: float) -> int:
    """Number of principal components whose cumulative variance ratio is at most ``perc``.

    Parameters
    ----------
    centered : ndarray, (N, T)
        Data centered over samples; features are treated as observations (the reference's PCA).
    perc : float
        Fraction of variance, in (0, 1].

    Returns
    -------
    int
    """
    spectrum = squared_singular_values(centered - centered.mean(axis=0, keepdims=True))
    return int(np.count_nonzero(np.cumsum(spectrum / spectrum.sum()) <= perc))


def data_dimension(manifolds, perc: float = 0.9) -> tuple[float, int, int]:
    """Total dimension of all manifolds' points together.

    Parameters
    ----------
    manifolds : list of P array_like (N, M_p), or array_like (P, N, M)
        Features x samples per manifold.
    perc : float
        Fraction of variance for the explained-variance dimension, in (0, 1].

    Returns
    -------
    participation_ratio : float
    explained_variance_dim : int
    feature_dim : int
        N.

    Raises
    ------
    InputError
        On invalid manifolds, ``perc`` outside (0, 1], or data without variance.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pr, dim90, features = data_dimension([rng.standard_normal((30, 20)) for _ in range(3)])
    >>> features, 0 < dim90 <= 30
    (30, True)
    """
    checked = check_manifolds(manifolds)
    if not 0.0 < perc <= 1.0:
        raise InputError(f"perc must be in (0, 1], got {perc!r}")
    data = np.concatenate(checked, axis=1)
    data -= data.mean(axis=1, keepdims=True)
    if not np.any(data):
        raise InputError("all points are identical: the data has no variance")
    return participation_ratio(data), explained_variance_dimension(data, perc), data.shape[0]
