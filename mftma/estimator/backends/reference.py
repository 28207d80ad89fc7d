"""The ``cvxpy`` backend: one small quadratic program per t vector, the slow and obviously exact path.

For every t vector the primal problem of docs/SCIENCE.md §2 step 5,
``min_v ||v - t||^2  s.t.  S^T v <= -kappa``, is handed to cvxpy (CLARABEL) and ``t - v`` is returned.
The projection ``v`` is unique (the objective is strictly convex), so no multipliers are needed:
``t - v = S @ alpha`` holds for any optimal multipliers ``alpha``.
"""
from __future__ import annotations

import numpy as np

#: CLARABEL stopping tolerances. The interior-point method converges quadratically at the end, so
#: tightening its defaults (1e-8) costs a couple of iterations and brings ``v`` to about 1e-12,
#: which the 1e-8 agreement with the exact active-set backends needs; no polishing step is used.
SOLVER_OPTIONS = {
    "tol_gap_abs": 1e-11,
    "tol_gap_rel": 1e-11,
    "tol_feas": 1e-11,
    "tol_ktratio": 1e-6,
    "max_iter": 400,
}


def _one_manifold(points: np.ndarray, t_vec: np.ndarray, kappa: float) -> np.ndarray:
    """``t - v`` for every column ``t`` of ``t_vec`` (see :func:`solve_cone_projections`)."""
    import cvxpy as cp

    dim = points.shape[0]
    t = cp.Parameter(dim)
    v = cp.Variable(dim)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(v - t)), [points.T @ v <= -kappa])
    residuals = np.zeros_like(t_vec)
    for i in range(t_vec.shape[1]):
        # When t itself satisfies every constraint it is its own projection and t - v = 0.
        if np.max(t_vec[:, i] @ points) + kappa < 0:
            continue
        t.value = t_vec[:, i]
        problem.solve(solver=cp.CLARABEL, **SOLVER_OPTIONS)
        residuals[:, i] = t_vec[:, i] - v.value
    return residuals


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
