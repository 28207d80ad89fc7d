"""Capacity of a D-dimensional ball: the theory curve next to the mean-field estimate.

The ball approximation (docs/method.md §2.10, Chung, Lee & Sompolinsky 2018) gives the capacity of
manifolds that are balls of radius ``R`` (in units of the center norm) in ``D`` dimensions, classified with margin ``kappa``:

    alpha_B^-1(kappa, R, D) = int_0^inf dr chi_D(r) int Dt A(t, r)

with ``A = (R r - t + kappa)^2 / (R^2 + 1)`` on the touching interval ``kappa - r/R < t < kappa + R r``,
``A = (t - kappa)^2 + r^2`` on the embedded interval ``t < kappa - r/R`` and ``0`` above. The inner Gaussian
integral is a polynomial moment over an interval and is evaluated in closed form (Gaussian moments through
``ndtr``); the outer expectation over the chi distribution of ``r`` is a composite Gauss-Legendre quadrature,
accurate to ~1e-9 relative for any real ``D > 0``, any ``R >= 0`` and any margin.
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammainc, gammaln, ndtr

from mftma.errors import InputError

# Quadrature over the chi-distributed radius (see _chi_expectation); relative accuracy ~1e-9 for all D > 0.
_GRADING_RATIO = 0.25
_GRADED_PANELS = 40
_UNIFORM_PANELS = 48
_NODES_PER_PANEL = 12

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def ball_capacity(kappa, radius, dimension) -> np.ndarray:
    """Capacity alpha_B(kappa, R, D) of D-dimensional balls of radius R with margin kappa.

    Parameters
    ----------
    kappa : float or array_like
        Margin, in units of the center norm (any real number).
    radius : float or array_like
        Ball radius R >= 0 relative to the center norm; R = 0 gives Gardner's capacity of points.
    dimension : float or array_like
        Ball dimension D > 0 (need not be an integer, like the manifold dimension D_M).

    Returns
    -------
    numpy.ndarray
        alpha_B, broadcast over the three arguments (a 0-d array for scalar input).

    Raises
    ------
    InputError
        If an argument is not finite, ``radius < 0`` or ``dimension <= 0``.

    Examples
    --------
    >>> float(ball_capacity(0.0, 0.0, 1.0))  # points: Gardner's alpha = 2
    2.0
    >>> round(float(ball_capacity(0.0, 1.0, 2.0)), 4)
    0.6667
    """
    kappa, radius, dimension = _checked_arguments(kappa, radius, dimension)
    inverse = np.array(1.0 / gardner_capacity(kappa))  # the R = 0 entries
    ball = radius > 0
    if np.any(ball):
        inverse[ball] = _chi_expectation(kappa[ball], radius[ball], dimension[ball])
    return 1.0 / inverse


def ball_capacity_large_d(radius, dimension) -> np.ndarray:
    """Large-D limit of the ball capacity at zero margin, alpha_B ~ (1 + R^2) / (R^2 D).

    Valid when ``R sqrt(D)`` is large; it is the limit that ``ball_capacity(0, R, D)`` approaches.

    Parameters
    ----------
    radius : float or array_like
        Ball radius R > 0 relative to the center norm.
    dimension : float or array_like
        Ball dimension D > 0.

    Returns
    -------
    numpy.ndarray
        The limiting capacity, broadcast over the arguments.

    Examples
    --------
    >>> float(ball_capacity_large_d(1.0, 100.0))
    0.02
    """
    _, radius, dimension = _checked_arguments(0.0, radius, dimension)
    if np.any(radius == 0):
        raise InputError("radius must be > 0 for the large-D limit (it diverges at R = 0)")
    return (1.0 + radius**2) / (radius**2 * dimension)


def gardner_capacity(kappa) -> np.ndarray:
    """Capacity of random points with margin kappa, 1 / int_{-kappa}^inf Dt (t + kappa)^2 (= 2 at kappa 0).

    Parameters
    ----------
    kappa : float or array_like
        Margin.

    Returns
    -------
    numpy.ndarray
        Gardner's capacity, the R -> 0 limit of :func:`ball_capacity`.

    Examples
    --------
    >>> float(gardner_capacity(0.0))
    2.0
    """
    kappa = np.asarray(kappa, dtype=float)
    # int_{-kappa}^inf Dt (t + kappa)^2 = (1 + kappa^2) Phi(kappa) + kappa phi(kappa)
    return 1.0 / ((1.0 + kappa**2) * ndtr(kappa) + kappa * _INV_SQRT_2PI * np.exp(-0.5 * kappa**2))


def _checked_arguments(kappa, radius, dimension):
    try:
        arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (kappa, radius, dimension)))
    except (TypeError, ValueError) as error:
        raise InputError(f"kappa, radius and dimension must be numbers or broadcastable arrays: {error}") from None
    kappa, radius, dimension = (np.array(a) for a in arrays)
    for name, values in (("kappa", kappa), ("radius", radius), ("dimension", dimension)):
        if not np.all(np.isfinite(values)):
            raise InputError(f"{name} must be finite, got {values[~np.isfinite(values)].ravel()[:3]}")
    if np.any(radius < 0):
        raise InputError(f"radius must be >= 0, got {radius[radius < 0].ravel()[:3]}")
    if np.any(dimension <= 0):
        raise InputError(f"dimension must be > 0, got {dimension[dimension <= 0].ravel()[:3]}")
    return kappa, radius, dimension


def _chi_expectation(kappa, radius, dimension):
    """E_r[int Dt A(t, r)] for r ~ chi(dimension), broadcast over 1-d arrays with radius > 0.

    Composite Gauss-Legendre on panels: geometrically graded towards r = 0 (resolving the r^(D-1) density
    and the features of width ~R or ~1/R that the inner integral has near 0), then uniform panels over the
    bulk of the chi distribution up to sqrt(D) + 12, beyond which the remaining mass is below 1e-30.
    """
    kappa, radius, dimension = kappa[:, None], radius[:, None], dimension[:, None]
    root_d = np.sqrt(dimension)
    bulk_start = np.maximum(1.0, root_d - 12.0)
    graded = bulk_start * _GRADING_RATIO ** np.arange(_GRADED_PANELS, -1, -1)
    uniform = bulk_start + (root_d + 12.0 - bulk_start) * np.linspace(0.0, 1.0, _UNIFORM_PANELS + 1)
    edges = np.concatenate([graded, uniform[:, 1:]], axis=1)
    nodes, weights = np.polynomial.legendre.leggauss(_NODES_PER_PANEL)
    half = 0.5 * np.diff(edges, axis=1)[:, :, None]
    r = (0.5 * (edges[:, 1:] + edges[:, :-1]))[:, :, None] + half * nodes
    r, panel_weights = r.reshape(len(r), -1), (half * weights).reshape(len(r), -1)
    log_density = (dimension - 1.0) * np.log(r) - 0.5 * r**2 - (0.5 * dimension - 1.0) * np.log(2.0) - gammaln(
        0.5 * dimension
    )
    integrand = np.exp(log_density) * _inner_gaussian_integral(kappa, radius, r)
    # the mass below the first panel, where the inner integral equals its value at r = 0
    below = gammainc(0.5 * dimension, 0.5 * edges[:, :1] ** 2) * _inner_gaussian_integral(kappa, radius, 0.0)
    return (integrand * panel_weights).sum(axis=1) + below[:, 0]


def _inner_gaussian_integral(kappa, radius, r):
    """int Dt A(t, r) in closed form, broadcast over kappa, radius and r."""
    lower = kappa - r / radius
    upper = kappa + radius * r
    phi_lower, phi_upper = _gaussian_density(lower), _gaussian_density(upper)
    lower_phi = lower * phi_lower
    cdf_lower = ndtr(lower)
    # touching interval: moments of t over [lower, upper], A = (upper - t)^2 / (1 + R^2)
    m0 = ndtr(upper) - cdf_lower
    m1 = phi_lower - phi_upper
    m2 = m0 + lower_phi - upper * phi_upper
    touching = (upper**2 * m0 - 2.0 * upper * m1 + m2) / (1.0 + radius**2)
    # embedded interval (-inf, lower]: A = (t - kappa)^2 + r^2
    e1 = -phi_lower
    e2 = cdf_lower - lower_phi
    embedded = e2 - 2.0 * kappa * e1 + (kappa**2 + r**2) * cdf_lower
    return touching + embedded


def _gaussian_density(x):
    return _INV_SQRT_2PI * np.exp(-0.5 * np.square(x))
