"""The ``cvxpy`` backend: one small quadratic program per t vector, the slow and obviously exact path.

For every t vector the primal problem of docs/method.md §2.6,
``min_v ||v - t||^2  s.t.  S^T v <= -kappa``, is handed to cvxpy (CLARABEL) and ``t - v`` is returned.
The projection ``v`` is unique (the objective is strictly convex), and ``t - v = S @ alpha`` for any
optimal multipliers ``alpha``. An interior-point solution is accurate to about the square root of its
tolerance where the projection is degenerate, so it is polished on the multipliers' support and the
polished answer kept only when it passes an exact KKT check (:func:`_polish`).
"""
from __future__ import annotations

import numpy as np

#: CLARABEL stopping tolerances, tighter than its defaults (1e-8) at the cost of a few iterations, so that
#: the multipliers identify the active points well for :func:`_polish`.
SOLVER_OPTIONS = {
    "tol_gap_abs": 1e-11,
    "tol_gap_rel": 1e-11,
    "tol_feas": 1e-11,
    "tol_ktratio": 1e-6,
    "max_iter": 400,
}
#: Candidate supports when polishing: multipliers above these fractions of the largest.
SUPPORT_TOLS = (1e-6, 1e-4, 1e-2)
#: Largest scaled constraint violation ``S^T (t' - w)``, and distance of ``w`` from the cone of the
#: support, that a polished solution may have.
CERTIFICATE_TOL = 1e-12


def _one_manifold(points: np.ndarray, t_vec: np.ndarray, kappa: float) -> np.ndarray:
    """``t - v`` for every column ``t`` of ``t_vec`` (see :func:`solve_cone_projections`)."""
    import cvxpy as cp

    dim = points.shape[0]
    t = cp.Parameter(dim)
    v = cp.Variable(dim)
    constraint = points.T @ v <= -kappa
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(v - t)), [constraint])
    residuals = np.zeros_like(t_vec)
    for i in range(t_vec.shape[1]):
        # When t itself satisfies every constraint it is its own projection and t - v = 0.
        if np.max(t_vec[:, i] @ points) + kappa < 0:
            continue
        t.value = t_vec[:, i]
        problem.solve(solver=cp.CLARABEL, **SOLVER_OPTIONS)
        residuals[:, i] = _polish(points, t_vec[:, i], kappa, t_vec[:, i] - v.value, constraint.dual_value)
    return residuals


def _polish(points, t, kappa, residual, alpha):
    """Refine ``t - v`` exactly on the support of the multipliers, when the refinement is certified.

    The QP's objective is accurate to the solver tolerance, but ``v`` only to about its square root
    where the projection is flat (e.g. points on a segment). With ``A`` the support of the optimal
    multipliers, the optimal ``t - v`` is the projection ``w`` of ``t' = t + kappa e_{D+1}`` onto the
    span of ``S_A``. The support is read off the solver's multipliers at a few thresholds (an
    interior-point method leaves small multipliers of degenerate points at 1e-5 of the largest), and the
    first candidate ``w`` that satisfies the KKT conditions of the cone projection is kept:
    ``t' - w`` is orthogonal to ``w`` (by construction), ``S^T (t' - w) <= 0`` (``v`` is feasible) and
    ``w`` is a non-negative combination of ``S_A`` (checked with scipy's NNLS). If none does, the
    solver's answer is returned unchanged.
    """
    from scipy.optimize import nnls

    if alpha is None or alpha.max() <= 0:
        return residual
    shifted = t.copy()
    shifted[-1] += kappa
    scale = np.linalg.norm(shifted) * np.sqrt(np.max(np.sum(points**2, axis=0)))
    for threshold in SUPPORT_TOLS:
        active = points[:, alpha > threshold * alpha.max()]
        refined = active @ np.linalg.lstsq(active, shifted, rcond=None)[0]
        feasible = np.max(points.T @ (shifted - refined)) <= CERTIFICATE_TOL * scale
        if feasible and nnls(active, refined)[1] <= CERTIFICATE_TOL * scale:
            return refined
    return residual


def solve_cone_projections(points, t_vecs, kappa=0.0):
    """``t - v = S @ alpha`` for every t vector of every manifold, by one QP per t vector.

    Parameters
    ----------
    points : list of ndarray, each (D_p+1, M_p)
        Processed manifolds (last row all ones).
    t_vecs : list of ndarray, each (D_p+1, n_t)
        Gaussian t vectors of each manifold.
    kappa : float
        Margin, >= 0.

    Returns
    -------
    list of ndarray, each (D_p+1, n_t)
        ``t - v`` where ``v`` is the projection of ``t`` onto ``{v : S^T v <= -kappa}``.
    """
    return [_one_manifold(s, t, float(kappa)) for s, t in zip(points, t_vecs)]
