"""Capacity, radius and dimension of manifolds from their anchor points (docs/method.md §2.6-2.8).

A backend (:mod:`mftma.estimator.backends`) solves, for each t vector, the projection
``v = argmin ||v - t||^2 s.t. S^T v <= -kappa`` and returns ``t - v = S @ alpha``. This module holds,
once for all backends, the conventions of the reference implementation that turn it into anchor points
``s~(t)`` and the formulas of capacity, radius and dimension. They are compiled with numba: one manifold
takes a few tens of microseconds instead of the overhead of some thirty numpy calls.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from mftma.estimator.backends import cone_projection_solver
from mftma.estimator import DEFAULT_KAPPA
from mftma.estimator.threads import map_in_threads

#: ``||v - t||`` below this: t is treated as interior and gets its max-projection point (reference).
INTERIOR_TOL = 1e-8
#: Added to ``||s~||^2`` of the first D coordinates before normalising, in the dimension (reference).
S_NORM_EPS = 1e-12


@numba.njit(cache=True)
def _column_dots(a: np.ndarray, b: np.ndarray, rows: int) -> np.ndarray:
    """``sum(a[:rows] * b[:rows], axis=0)``, summed row after row like numpy's (to the last bit)."""
    dots = np.zeros(a.shape[1])
    for i in range(rows):
        for k in range(a.shape[1]):
            dots[k] += a[i, k] * b[i, k]
    return dots


@numba.njit(cache=True)
def _pairwise_sum(values: np.ndarray) -> float:
    """numpy's pairwise summation of a 1-d array: the same additions in the same order as ``np.sum``."""
    n = values.size
    if n < 8:
        total = 0.0
        for value in values:
            total += value
        return total
    if n <= 128:
        partial = values[:8].copy()
        i = 8
        while i < n - n % 8:
            partial += values[i:i + 8]
            i += 8
        total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + (
            (partial[4] + partial[5]) + (partial[6] + partial[7])
        )
        for value in values[i:]:
            total += value
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(values[:half]) + _pairwise_sum(values[half:])


@numba.njit(cache=True)
def _mean(values: np.ndarray) -> float:
    """``np.mean`` of a 1-d array, to the last bit."""
    return _pairwise_sum(values) / values.size


@numba.njit(cache=True)
def max_projection_points(points: np.ndarray, t_vec: np.ndarray) -> np.ndarray:
    """For each t vector, the manifold point with the largest projection on t's first D coordinates.

    Parameters
    ----------
    points : ndarray, (D+1, M)
        Manifold points, last row all ones.
    t_vec : ndarray, (D+1, n_t)
        t vectors.

    Returns
    -------
    ndarray, (D+1, n_t)
        The chosen point for every t vector (the first of equal ones), its last coordinate 1.
    """
    dim = points.shape[0] - 1
    projections = np.dot(np.ascontiguousarray(t_vec[:dim].T), np.ascontiguousarray(points[:dim]))
    chosen = np.empty((dim + 1, t_vec.shape[1]))
    for k in range(t_vec.shape[1]):
        best = np.argmax(projections[k])
        chosen[:dim, k] = points[:dim, best]
        chosen[dim, k] = 1.0
    return chosen


@numba.njit(cache=True)
def anchor_points(points: np.ndarray, t_vec: np.ndarray, residual: np.ndarray, kappa: float) -> np.ndarray:
    """Anchor points ``s~(t)`` from the solved projections.

    Parameters
    ----------
    points : ndarray, (D+1, M)
        Manifold points, last row all ones.
    t_vec : ndarray, (D+1, n_t)
        t vectors.
    residual : ndarray, (D+1, n_t)
        ``t - v = S @ alpha`` from a backend; its last coordinate is ``sum(alpha)``.
    kappa : float
        Margin.

    Returns
    -------
    ndarray, (D+1, n_t)
        ``(t - v) / sum(alpha)``; the max-projection point where t satisfies every constraint
        (``max_s t.s + kappa < 0``) or where ``||v - t|| < INTERIOR_TOL``.
    """
    rows = t_vec.shape[0]
    anchors = max_projection_points(points, t_vec)
    margin = _column_dots(t_vec, anchors, rows) + kappa
    residual_norm = np.sqrt(_column_dots(residual, residual, rows))
    for k in range(t_vec.shape[1]):
        if not (margin[k] < 0 or residual_norm[k] < INTERIOR_TOL):
            anchors[:, k] = residual[:, k] / residual[rows - 1, k]
    return anchors


@numba.njit(cache=True, error_model="numpy")
def geometry_from_anchor_points(
    t_vec: np.ndarray, anchors: np.ndarray, kappa: float
) -> tuple[float, float, float]:
    """Capacity, radius and dimension of one manifold (docs/method.md §2.7).

    Parameters
    ----------
    t_vec : ndarray, (D+1, n_t)
        t vectors.
    anchors : ndarray, (D+1, n_t)
        Anchor points ``s~(t)`` from :func:`anchor_points`.
    kappa : float
        Margin.

    Returns
    -------
    capacity, radius, dimension : float
        ``1 / <[t.s~ + kappa]_+^2 / ||s~||^2>_t`` (a term is 0 where ``||s~|| = 0``),
        ``sqrt(<||delta s~||^2>_t)`` and ``D <t^.s^>_t^2``.
    """
    rows, n_t = t_vec.shape
    dim = rows - 1
    margin = np.maximum(_column_dots(t_vec, anchors, rows) + kappa, 0.0)
    norm_sq = _column_dots(anchors, anchors, rows)
    terms = np.where(norm_sq > 0, margin**2 / np.where(norm_sq > 0, norm_sq, 1.0), 0.0)
    capacity = 1.0 / _mean(terms)

    t_norm = np.sqrt(_column_dots(t_vec, t_vec, dim))
    s_norm = np.sqrt(_column_dots(anchors, anchors, dim) + S_NORM_EPS)
    deviation_sq = np.zeros(n_t)
    cosine = np.zeros(n_t)
    for i in range(dim):
        centre = _mean(anchors[i])
        for k in range(n_t):
            deviation_sq[k] += ((anchors[i, k] - centre) / anchors[dim, k]) ** 2
            cosine[k] += (t_vec[i, k] / t_norm[k]) * (anchors[i, k] / s_norm[k])
    radius = math.sqrt(_mean(deviation_sq))
    dimension = dim * _mean(cosine) ** 2
    return capacity, radius, dimension


@numba.njit(nogil=True, cache=True)
def _manifold_geometry(points, t_vec, residual, kappa):
    """Capacity, radius and dimension of one manifold, without the GIL (manifolds run in threads)."""
    return geometry_from_anchor_points(t_vec, anchor_points(points, t_vec, residual, kappa), kappa)


def anchor_geometry(points, t_vecs, kappa=DEFAULT_KAPPA, backend="auto"):
    """Capacity, radius and dimension of each manifold from its anchor points.

    Parameters
    ----------
    points : list of P ndarrays, each (D_p+1, M_p)
        Processed manifolds ``s`` of docs/method.md §2.4 (last row all ones); D_p and M_p may
        differ between manifolds. float64, validated by the caller.
    t_vecs : list of P ndarrays, each (D_p+1, n_t)
        Gaussian t vectors.
    kappa : float
        Margin, >= 0.
    backend : str
        ``"auto"``, ``"numba"``, ``"cuda"`` or ``"cvxpy"``
        (see :func:`~mftma.estimator.backends.select_backend`).

    Returns
    -------
    capacity, radius, dimension : ndarray of float64, (P,)
        Per manifold; averaging over manifolds (inverse for the capacity) is the caller's.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> cloud = np.vstack([rng.standard_normal((5, 10)), np.ones((1, 10))])
    >>> capacity, radius, dimension = anchor_geometry([cloud], [rng.standard_normal((6, 50))])
    >>> capacity.shape
    (1,)
    """
    kappa = float(kappa)
    residuals = cone_projection_solver(backend)(points, t_vecs, kappa)
    points, t_vecs, residuals = ([np.ascontiguousarray(a, dtype=np.float64) for a in group]
                                 for group in (points, t_vecs, residuals))

    def geometry(p):
        return _manifold_geometry(points[p], t_vecs[p], residuals[p], kappa)

    capacity, radius, dimension = np.ascontiguousarray(np.asarray(map_in_threads(geometry, len(points))).T)
    return capacity, radius, dimension


def each_manifold_geometry(sD1, t_vec, kappa=DEFAULT_KAPPA, backend="auto"):
    """Capacity, radius and dimension of one manifold (see :func:`anchor_geometry`).

    Parameters
    ----------
    sD1 : ndarray, (D+1, M)
        Processed manifold points, last row all ones.
    t_vec : ndarray, (D+1, n_t)
        Gaussian t vectors.
    kappa : float
        Margin, >= 0.
    backend : str
        Backend name.

    Returns
    -------
    capacity, radius, dimension : float
    """
    capacity, radius, dimension = anchor_geometry([sD1], [t_vec], kappa, backend)
    return float(capacity[0]), float(radius[0]), float(dimension[0])
