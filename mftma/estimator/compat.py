"""The original MFTMA functions, with their signatures and return tuples, on top of the new estimator.

Notebooks written for the reference package keep working unchanged::

    from mftma import manifold_analysis_corr, each_manifold_analysis_D1, alldata_dimension_analysis

Extra keyword-only arguments: ``backend``, ``seed`` and ``progress``.
"""
from __future__ import annotations

import numpy as np

from mftma.errors import InputError
from mftma.estimator import DEFAULT_N_REPS
from mftma.estimator.anchor import INTERIOR_TOL, each_manifold_geometry
from mftma.estimator.validation import check_count, check_kappa, check_points, check_t_vecs


def manifold_analysis_corr(XtotT, kappa, n_t, t_vecs=None, n_reps=DEFAULT_N_REPS, *, backend="auto", seed=None,
                           progress=False):
    """Capacity, radius and dimension of P manifolds after removing their common center structure.

    Parameters
    ----------
    XtotT : list of P array_like (N, M_p), or array_like (P, N, M)
        Features x samples per manifold.
    kappa : float
        Margin, >= 0.
    n_t : int
        Number of t vectors per manifold.
    t_vecs : list of P array_like (min(N, M_p) + 1, n_t), optional
        t vectors to use instead of seeded ones.
    n_reps : int
        Warm restarts per rank of the center-structure search (as many random ones are added).
    backend, seed, progress
        See :func:`mftma.estimator.analysis.analyze_manifolds`.

    Returns
    -------
    a_Mall, R_Mall, D_Mall : ndarray, (P,)
        Capacity, radius and dimension per manifold.
    res_coeff0 : float
        Center correlation.
    KK : int
        Number of common center directions removed.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, R, D, rho, K = manifold_analysis_corr([rng.standard_normal((40, 10)) for _ in range(4)], 0, 50, seed=0)
    >>> a.shape
    (4,)
    """
    from mftma.estimator.analysis import analyze_manifolds

    result = analyze_manifolds(
        XtotT, kappa, n_t, t_vecs=t_vecs, n_reps=n_reps, seed=seed, backend=backend, progress=progress
    )
    return result.capacity, result.radius, result.dimension, result.center_correlation, result.K


def each_manifold_analysis_D1(sD1, kappa, n_t, eps=1e-8, t_vec=None, *, backend="auto", seed=None):
    """Capacity, radius and dimension of one processed manifold.

    Parameters
    ----------
    sD1 : array_like, (D+1, M)
        Manifold points with the constant coordinate 1 as last row.
    kappa : float
        Margin, >= 0.
    n_t : int
        Number of t vectors.
    eps : float
        Distance below which t counts as interior; only the reference's 1e-8 is supported.
    t_vec : array_like, (D+1, n_t), optional
        t vectors to use instead of seeded ones.
    backend : str
        Anchor-point solver.
    seed : int, optional
        Seed of the t vectors.

    Returns
    -------
    a_M, R_M, D_M : float
        Capacity, radius and dimension.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> points = np.vstack([rng.standard_normal((5, 10)), np.ones((1, 10))])
    >>> capacity, radius, dimension = each_manifold_analysis_D1(points, 0.0, 100, seed=0)
    >>> capacity > 0
    True
    """
    if eps != INTERIOR_TOL:
        raise InputError(f"eps must be {INTERIOR_TOL} (the reference's interior tolerance), got {eps!r}")
    points = check_points(sD1)
    kappa, n_t = check_kappa(kappa), check_count(n_t, "n_t")
    if t_vec is None:
        t_vec = np.random.default_rng(seed).standard_normal((points.shape[0], n_t))
    else:
        t_vec = check_t_vecs([t_vec], [points.shape[0]], n_t)[0]
    return each_manifold_geometry(points, t_vec, kappa, backend)


def alldata_dimension_analysis(XtotT, perc=0.9):
    """Total dimension of all points: participation ratio, explained-variance dimension, feature count.

    Parameters
    ----------
    XtotT : list of P array_like (N, M_p), or array_like (P, N, M)
    perc : float
        Fraction of variance for the explained-variance dimension.

    Returns
    -------
    D_participation_ratio : float
    D_explained_variance : int
    D_feature : int

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> alldata_dimension_analysis([rng.standard_normal((30, 20)) for _ in range(3)])[2]
    30
    """
    from mftma.estimator.dimension import data_dimension

    return data_dimension(XtotT, perc)
