"""Capacity, radius and dimension of manifolds from their anchor points (docs/SCIENCE.md §2 steps 5-8).

A backend (:mod:`mftma.estimator.backends`) solves, for each t vector, the projection
``v = argmin ||v - t||^2 s.t. S^T v <= -kappa`` and returns ``t - v = S @ alpha``. This module holds,
once for all backends, the conventions of the reference implementation that turn it into anchor points
``s~(t)`` and the formulas of capacity, radius and dimension.
"""
from __future__ import annotations

import numpy as np

from mftma.estimator.backends import cone_projection_solver

#: ``||v - t||`` below this: t is treated as interior and gets its max-projection point (reference).
INTERIOR_TOL = 1e-8
#: Added to ``||s~||^2`` of the first D coordinates before normalising, in the dimension (reference).
S_NORM_EPS = 1e-12


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
        The chosen point for every t vector, its last coordinate 1.
    """
    dim = points.shape[0] - 1
    best = np.argmax(t_vec[:dim].T @ points[:dim], axis=1)
    chosen = points[:, best].copy()
    chosen[-1] = 1.0
    return chosen


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
    fallback = max_projection_points(points, t_vec)
    interior = (np.sum(t_vec * fallback, axis=0) + kappa < 0) | (
        np.linalg.norm(residual, axis=0) < INTERIOR_TOL
    )
    scale = np.where(interior, 1.0, residual[-1])
    return np.where(interior, fallback, residual / scale)


def geometry_from_anchor_points(
    t_vec: np.ndarray, anchors: np.ndarray, kappa: float
) -> tuple[float, float, float]:
    """Capacity, radius and dimension of one manifold (docs/SCIENCE.md §2 steps 6-8).

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
    dim = t_vec.shape[0] - 1
    margin = np.maximum(np.sum(t_vec * anchors, axis=0) + kappa, 0.0)
    norm_sq = np.sum(anchors**2, axis=0)
    safe_norm_sq = np.where(norm_sq > 0, norm_sq, 1.0)
    inverse_capacity = np.mean(np.where(norm_sq > 0, margin**2 / safe_norm_sq, 0.0))
    with np.errstate(divide="ignore"):
        capacity = 1.0 / inverse_capacity

    centered = anchors - anchors.mean(axis=1, keepdims=True)
    deviation = centered[:dim] / anchors[-1]
    radius = np.sqrt(np.mean(np.sum(deviation**2, axis=0)))

    t_hat = t_vec[:dim] / np.linalg.norm(t_vec[:dim], axis=0)
    s_hat = anchors[:dim] / np.sqrt(np.sum(anchors[:dim] ** 2, axis=0) + S_NORM_EPS)
    dimension = dim * np.mean(np.sum(t_hat * s_hat, axis=0)) ** 2
    return float(capacity), float(radius), float(dimension)


def anchor_geometry(points, t_vecs, kappa=0.0, backend="auto"):
    """Capacity, radius and dimension of each manifold from its anchor points.

    Parameters
    ----------
    points : list of P ndarrays, each (D_p+1, M_p)
        Processed manifolds ``s`` of docs/SCIENCE.md §2 step 4 (last row all ones); D_p and M_p may
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
    geometry = np.empty((3, len(points)), dtype=np.float64)
    for p, (s, t, r) in enumerate(zip(points, t_vecs, residuals)):
        geometry[:, p] = geometry_from_anchor_points(t, anchor_points(s, t, r, kappa), kappa)
    capacity, radius, dimension = geometry
    return capacity, radius, dimension


def each_manifold_geometry(sD1, t_vec, kappa=0.0, backend="auto"):
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
