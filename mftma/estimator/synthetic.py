"""Synthetic manifolds with known geometry, for checking the estimator, the ball theory and the simulation.

Every manifold is a unit-norm random center in N dimensions plus a shape of the given radius (relative to
the center norm) in its own random D-dimensional subspace; ``"random"`` gives unstructured Gaussian clouds.
"""
from __future__ import annotations

import numpy as np

from mftma.errors import InputError

#: Shapes :func:`synthetic_manifolds` draws, and how a D-dimensional coefficient vector is sampled.
KINDS = ("ball", "sphere", "gaussian", "random")


def synthetic_manifolds(
    kind: str,
    n_manifolds: int,
    n_features: int,
    n_samples: int,
    *,
    radius: float = 1.0,
    dimension: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """P manifolds of M points in N features with a known shape.

    Parameters
    ----------
    kind : {"ball", "sphere", "gaussian", "random"}
        ``"ball"``: uniform in a D-ball (D = 1 is a segment); ``"sphere"``: uniform on the sphere bounding
        that ball; ``"gaussian"``: a low-rank Gaussian cloud with RMS radius ``radius``; ``"random"``: i.i.d.
        standard normal points in all N features (``radius``, ``dimension`` unused), the unstructured case
        whose capacity is about 2 / M.
    n_manifolds, n_features, n_samples : int
        P, N and M.
    radius : float
        Radius relative to the (unit) center norm.
    dimension : int
        D, the dimension of each manifold's subspace (at most N).
    seed : int
        Seed of centers, subspaces and points.

    Returns
    -------
    numpy.ndarray, (P, N, M)

    Examples
    --------
    >>> synthetic_manifolds("ball", 3, 20, 5, radius=0.5, dimension=2).shape
    (3, 20, 5)
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 1 <= dimension <= n_features:
        raise InputError(f"dimension must be between 1 and n_features = {n_features}, got {dimension}")
    if radius < 0:
        raise InputError(f"radius must be >= 0, got {radius}")
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((n_manifolds, n_features, n_samples))
    centers = rng.standard_normal((n_manifolds, n_features, 1))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    bases = np.linalg.qr(rng.standard_normal((n_manifolds, n_features, dimension)))[0]
    coefficients = rng.standard_normal((n_manifolds, dimension, n_samples))
    if kind == "gaussian":
        coefficients /= np.sqrt(dimension)
    else:
        coefficients /= np.linalg.norm(coefficients, axis=1, keepdims=True)
        if kind == "ball":
            coefficients *= rng.random((n_manifolds, 1, n_samples)) ** (1.0 / dimension)
    return centers + radius * bases @ coefficients
