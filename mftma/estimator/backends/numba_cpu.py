"""The ``numba`` backend: an exact active-set solve of the dual problem, batched and parallel on the CPU.

For a manifold with points ``S`` (D+1, M), last row all ones, and a t vector ``t``, the multipliers of
``min_v ||v - t||^2 s.t. S^T v <= -kappa`` solve the non-negative quadratic program

    min_{alpha >= 0}  1/2 alpha^T G alpha - alpha^T b,    G = S^T S,  b = S^T t + kappa,

and ``t - v = S alpha``. Because the last row of ``S`` is all ones, ``b = S^T t'`` with
``t' = t + kappa e_{D+1}``: this is the non-negative least-squares problem ``min ||S alpha - t'||``, and
``S alpha`` is the projection of ``t'`` onto the cone spanned by the points. It is solved exactly by the
Lawson-Hanson active set in Gram form (Bro & De Jong), with an incrementally grown Cholesky factor of
``G`` restricted to the passive set. ``G`` may be singular (repeated or collinear points): a column that
is numerically in the span of the passive columns has a zero gradient in exact arithmetic, so it is set
aside instead of being factorised; the solve ends with an explicit check of the KKT conditions.

:func:`nnls_gram` is plain Python without allocation or library calls, so that the same source is
compiled here with ``numba.njit`` and in :mod:`.cuda` as a ``numba.cuda`` device function.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numba

#: A free column enters the passive set when its gradient, divided by ``||s_j|| ||t'||``, exceeds this.
ENTER_TOL = 1e-11
#: A column whose squared distance to the span of the passive columns is below this fraction of
#: ``||s_j||^2`` counts as dependent on them (Cholesky pivot test).
DEPENDENCE_TOL = 1e-12
#: Final KKT check: every scaled gradient must be <= this (free columns) or within it of 0 (passive).
KKT_TOL = 1e-8

#: Status codes of :func:`nnls_gram`.
CONVERGED, ITERATION_LIMIT, KKT_VIOLATED = 0, 1, 2
_FREE, _PASSIVE, _SET_ASIDE = 0, 1, 2


def nnls_gram(gram, g0, m, rhs, r0, t_norm, alpha, lower, upper, y, z, grad, scale, order, state):
    """Solve ``min_{a >= 0} 1/2 a^T G a - a^T b`` by the Lawson-Hanson active set on the Gram matrix.

    Parameters
    ----------
    gram : 1-d float64 array
        ``G`` (m, m), symmetric, row-major, at ``gram[g0 : g0 + m * m]``.
    g0, m : int
        Offset of ``G`` and its size.
    rhs : 1-d float64 array
        ``b`` at ``rhs[r0 : r0 + m]``.
    r0 : int
        Offset of ``b``, and of the solution in ``alpha``.
    t_norm : float
        ``||t'||``, the scale of the gradients.
    alpha : 1-d float64 array
        Receives the solution at ``alpha[r0 : r0 + m]``.
    lower, upper, y, z, grad, scale, order, state : 1-d arrays
        Scratch of at least ``m * m`` (the first two) or ``m`` elements (the last two integer): the
        Cholesky factor ``L`` of the passive block by rows (``L[r, c]`` at ``lower[r * m + c]``) and by
        columns (at ``upper[c * m + r]``), ``L^-1 b_P``, the passive solution, the negative gradient
        ``b - G a``, ``1 / ||s_j||``, the passive indices in factor order and the state of every column.
        Keeping ``L`` both ways lets every triangular solve run along contiguous memory.

    Returns
    -------
    int
        ``CONVERGED``, ``ITERATION_LIMIT`` or ``KKT_VIOLATED``.
    """
    for j in range(m):
        alpha[r0 + j] = 0.0
        grad[j] = rhs[r0 + j]
        scale[j] = 1.0 / math.sqrt(gram[g0 + j * m + j])
        state[j] = _FREE
    n_passive = 0
    status = ITERATION_LIMIT
    for _ in range(4 * m + 20):
        # The free column with the steepest scaled descent enters the passive set.
        enter = -1
        best = ENTER_TOL * t_norm
        for j in range(m):
            if state[j] == _FREE and grad[j] * scale[j] > best:
                best = grad[j] * scale[j]
                enter = j
        if enter < 0:
            status = CONVERGED
            break
        # Its row of the factor solves L l = G[P, enter]; set it aside if it depends on the passive columns.
        row = n_passive * m
        for r in range(n_passive):
            lower[row + r] = gram[g0 + enter * m + order[r]]
        norm_sq = 0.0
        for c in range(n_passive):
            value = lower[row + c] / lower[c * m + c]
            lower[row + c] = value
            norm_sq += value * value
            for r in range(c + 1, n_passive):
                lower[row + r] -= upper[c * m + r] * value
        pivot = gram[g0 + enter * m + enter] - norm_sq
        if pivot <= DEPENDENCE_TOL * gram[g0 + enter * m + enter]:
            state[enter] = _SET_ASIDE
            continue
        diagonal = math.sqrt(pivot)
        lower[row + n_passive] = diagonal
        value = rhs[r0 + enter]
        for c in range(n_passive):
            upper[c * m + n_passive] = lower[row + c]
            value -= lower[row + c] * y[c]
        upper[n_passive * m + n_passive] = diagonal
        y[n_passive] = value / diagonal
        order[n_passive] = enter
        state[enter] = _PASSIVE
        n_passive += 1
        first_pass = True
        while True:
            # Unconstrained solution on the passive set: L^T z = y.
            for r in range(n_passive):
                z[r] = y[r]
            for r in range(n_passive - 1, -1, -1):
                solved = z[r] / lower[r * m + r]
                z[r] = solved
                for c in range(r):
                    z[c] -= lower[r * m + c] * solved
            if first_pass and z[n_passive - 1] <= 0.0:
                # In exact arithmetic the entering column gets a positive weight; here rounding
                # decided otherwise, so it is set aside and the factor keeps its previous rows.
                n_passive -= 1
                state[enter] = _SET_ASIDE
                break
            first_pass = False
            # Step from alpha towards z until the first passive weight reaches zero.
            step = 1.0
            blocking = -1
            for r in range(n_passive):
                if z[r] <= 0.0:
                    current = alpha[r0 + order[r]]
                    ratio = current / (current - z[r])
                    if ratio < step:
                        step = ratio
                        blocking = r
            if blocking < 0:
                for r in range(n_passive):
                    alpha[r0 + order[r]] = z[r]
                break
            kept = 0
            first_removed = n_passive
            for r in range(n_passive):
                index = order[r]
                updated = alpha[r0 + index] + step * (z[r] - alpha[r0 + index])
                if r == blocking or updated <= 0.0:
                    alpha[r0 + index] = 0.0
                    state[index] = _FREE
                    first_removed = min(first_removed, r)
                else:
                    alpha[r0 + index] = updated
                    order[kept] = index
                    kept += 1
            n_passive = kept
            # The span shrank: columns set aside may be independent again.
            for j in range(m):
                if state[j] == _SET_ASIDE:
                    state[j] = _FREE
            # Rows before the first removed column are unchanged; refactor the rest, and y with them.
            for r in range(first_removed, n_passive):
                for c in range(r + 1):
                    value = gram[g0 + order[r] * m + order[c]]
                    for q in range(c):
                        value -= lower[r * m + q] * lower[c * m + q]
                    value = value / lower[c * m + c] if c < r else math.sqrt(value)
                    lower[r * m + c] = value
                    upper[c * m + r] = value
                value = rhs[r0 + order[r]]
                for c in range(r):
                    value -= lower[r * m + c] * y[c]
                y[r] = value / lower[r * m + r]
        for j in range(m):
            grad[j] = rhs[r0 + j]
        for r in range(n_passive):
            weight = alpha[r0 + order[r]]
            base = g0 + order[r] * m
            for j in range(m):
                grad[j] -= gram[base + j] * weight
    if status == CONVERGED:
        # KKT: gradient <= 0 on free columns and = 0 on passive ones (alpha > 0 there by construction).
        limit = KKT_TOL * t_norm
        for j in range(m):
            scaled = grad[j] * scale[j]
            if scaled > limit or (state[j] == _PASSIVE and scaled < -limit):
                status = KKT_VIOLATED
    return status


class PackedProblems(NamedTuple):
    """The dual problems of all (manifold, t vector) pairs in flat arrays, for the kernels.

    Item ``i`` belongs to manifold ``item_manifold[i]``, whose Gram matrix (``sizes[p]`` squared,
    row-major) starts at ``gram[gram_offset[p]]``; its right-hand side, and its solution in an array
    shaped like ``rhs``, start at ``rhs_offset[i]``; ``t_norm[i] = ||t'||``.
    """

    gram: np.ndarray
    gram_offset: np.ndarray
    sizes: np.ndarray
    rhs: np.ndarray
    rhs_offset: np.ndarray
    item_manifold: np.ndarray
    t_norm: np.ndarray


def pack_problems(points, t_vecs, kappa) -> PackedProblems:
    """Gram matrices (once per manifold) and right-hand sides ``S^T t + kappa`` of every t vector.

    Parameters
    ----------
    points, t_vecs, kappa
        As in :func:`solve_cone_projections`.

    Returns
    -------
    PackedProblems
    """
    sizes = np.array([s.shape[1] for s in points], dtype=np.int64)
    n_t = np.array([t.shape[1] for t in t_vecs], dtype=np.int64)
    gram_offset = np.concatenate([[0], np.cumsum(sizes**2)[:-1]]).astype(np.int64)
    block_offset = np.concatenate([[0], np.cumsum(sizes * n_t)[:-1]]).astype(np.int64)
    item_manifold = np.repeat(np.arange(len(points), dtype=np.int64), n_t)
    first_item = np.concatenate([[0], np.cumsum(n_t)[:-1]]).astype(np.int64)
    within = np.arange(item_manifold.size, dtype=np.int64) - first_item[item_manifold]
    t_norm = np.concatenate(
        [np.sqrt(np.sum(t[:-1] ** 2, axis=0) + (t[-1] + kappa) ** 2) for t in t_vecs]
    )
    return PackedProblems(
        gram=np.concatenate([(s.T @ s).ravel() for s in points]),
        gram_offset=gram_offset,
        sizes=sizes,
        rhs=np.concatenate([(t.T @ s + kappa).ravel() for s, t in zip(points, t_vecs)]),
        rhs_offset=block_offset[item_manifold] + within * sizes[item_manifold],
        item_manifold=item_manifold,
        t_norm=t_norm,
    )


def unpack_residuals(points, t_vecs, alpha: np.ndarray) -> list[np.ndarray]:
    """``S @ alpha`` per manifold from the flat solution of :func:`pack_problems`'s layout."""
    residuals = []
    start = 0
    for s, t in zip(points, t_vecs):
        stop = start + s.shape[1] * t.shape[1]
        residuals.append(s @ alpha[start:stop].reshape(t.shape[1], s.shape[1]).T)
        start = stop
    return residuals


def check_status(status: np.ndarray, packed: PackedProblems) -> None:
    """Raise :class:`~mftma.errors.MFTMAError` naming the first (manifold, t vector) that failed."""
    failed = np.flatnonzero(status != CONVERGED)
    if failed.size:
        from mftma.errors import MFTMAError

        item = failed[0]
        manifold = packed.item_manifold[item]
        t_index = item - np.searchsorted(packed.item_manifold, manifold)
        reason = "did not converge" if status[item] == ITERATION_LIMIT else "failed its KKT check"
        raise MFTMAError(
            f"the active-set solve {reason} for {failed.size} t vector(s), first manifold {manifold} "
            f"t vector {t_index}; backend='cvxpy' solves these problems with a general QP solver"
        )


# IEEE division (no zero-divisor check): every divisor is a positive pivot or norm.
_nnls_gram_cpu = numba.njit(cache=True, error_model="numpy")(nnls_gram)

#: Work items handled in sequence by one parallel task (scratch is allocated once per chunk).
CHUNK = 32


@numba.njit(parallel=True, cache=True)
def _solve_items(gram, gram_offset, sizes, rhs, rhs_offset, item_manifold, t_norm, alpha, status):
    n_items = item_manifold.size
    largest = sizes.max()
    for chunk in numba.prange((n_items + CHUNK - 1) // CHUNK):
        lower = np.empty(largest * largest)
        upper = np.empty(largest * largest)
        vectors = np.empty((4, largest))
        order = np.empty(largest, dtype=np.int64)
        state = np.empty(largest, dtype=np.int64)
        for item in range(chunk * CHUNK, min(n_items, (chunk + 1) * CHUNK)):
            p = item_manifold[item]
            status[item] = _nnls_gram_cpu(
                gram, gram_offset[p], sizes[p], rhs, rhs_offset[item], t_norm[item], alpha,
                lower, upper, vectors[0], vectors[1], vectors[2], vectors[3], order, state,
            )


def solve_packed(packed: PackedProblems) -> tuple[np.ndarray, np.ndarray]:
    """Multipliers (laid out like ``packed.rhs``) and status codes of every packed problem."""
    alpha = np.empty_like(packed.rhs)
    status = np.empty(packed.item_manifold.size, dtype=np.int64)
    _solve_items(*packed, alpha, status)
    return alpha, status


def solve_cone_projections(points, t_vecs, kappa=0.0):
    """``t - v = S @ alpha`` for every t vector of every manifold, by a batched parallel active set.

    Parameters
    ----------
    points : list of ndarray, each (D_p+1, M_p)
        Processed manifolds (last row all ones), float64.
    t_vecs : list of ndarray, each (D_p+1, n_t)
        Gaussian t vectors of each manifold.
    kappa : float
        Margin, >= 0.

    Returns
    -------
    list of ndarray, each (D_p+1, n_t)
        ``S @ alpha`` with ``alpha`` the optimal multipliers.

    Raises
    ------
    MFTMAError
        If a solve fails its final KKT check (not observed in testing; the message names the problem).
    """
    packed = pack_problems(points, t_vecs, float(kappa))
    alpha, status = solve_packed(packed)
    check_status(status, packed)
    return unpack_residuals(points, t_vecs, alpha)
