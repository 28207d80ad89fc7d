"""The ``numba`` backend: an exact active-set solve of the dual problem, batched and parallel on the CPU.

For a manifold with points ``S`` (D+1, M), last row all ones, and a t vector ``t``, the multipliers of
``min_v ||v - t||^2 s.t. S^T v <= -kappa`` solve the non-negative quadratic program

    min_{alpha >= 0}  1/2 alpha^T G alpha - alpha^T b,    G = S^T S,  b = S^T t + kappa,

and ``t - v = S alpha``. Because the last row of ``S`` is all ones, ``b = S^T t'`` with
``t' = t + kappa e_{D+1}``: this is the non-negative least-squares problem ``min ||S alpha - t'||``, and
``S alpha`` is the projection of ``t'`` onto the cone spanned by the points. It is solved exactly by the
Lawson-Hanson active set in Gram form (Bro & De Jong), with an incrementally grown Cholesky factor of
``G`` restricted to the passive set. ``G`` is computed once per manifold and shared by its t vectors.
The active set starts from the positive entries of the unconstrained solution ``G^-1 b`` (computed for
all t vectors of a manifold in one matrix product), which on random manifolds misses the final support
by about one point, so that a solve takes about one factorisation instead of one step per active point.
``G`` may be singular (repeated or collinear points): a column that is numerically in the span of the
passive columns has a zero gradient in exact arithmetic, so it is set aside instead of being factorised.
Every solve ends with an explicit check of the KKT conditions; the rare problems that fail it (points
closer than the Gram form can resolve) are redone with scipy's NNLS on ``S`` (:func:`repair_unconverged`).

:func:`nnls_gram` is plain Python without allocation or library calls, so that the same source is
compiled here with ``numba.njit`` and in :mod:`.cuda` as a ``numba.cuda`` device function.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numba

#: A free column enters the passive set when its gradient, divided by ``||s_j|| ||t'||``, exceeds this.
ENTER_TOL = 1e-12
#: A column whose squared distance to the span of the passive columns is below this fraction of
#: ``||s_j||^2`` counts as dependent on them (Cholesky pivot test).
DEPENDENCE_TOL = 1e-12
#: Final KKT check: every scaled gradient must be <= this (free columns) or within it of 0 (passive).
KKT_TOL = 1e-12

#: Status codes of :func:`nnls_gram`.
CONVERGED, ITERATION_LIMIT, KKT_VIOLATED = 0, 1, 2
_FREE, _PASSIVE, _SET_ASIDE = 0, 1, 2


def nnls_gram(gram, g0, m, rhs, start, r0, t_norm, alpha, lower, y, z, grad, scale, order, state):
    """Solve ``min_{a >= 0} 1/2 a^T G a - a^T b`` by the Lawson-Hanson active set on the Gram matrix.

    The first pass takes in every column with a positive starting weight at once (the unconstrained
    solution is a good guess of the support) and drops those whose weight comes out non-positive;
    from there on, columns enter one at a time, steepest first, as in Lawson-Hanson.

    Parameters
    ----------
    gram : 1-d float64 array
        ``G`` (m, m), symmetric, row-major, at ``gram[g0 : g0 + m * m]``.
    g0, m : int
        Offset of ``G`` and its size.
    rhs, start : 1-d float64 arrays
        ``b`` and the starting weights at ``[r0 : r0 + m]``.
    r0 : int
        Offset of ``b`` and of the starting weights, and of the solution in ``alpha``.
    t_norm : float
        ``||t'||``, the scale of the gradients.
    alpha : 1-d float64 array
        Receives the solution at ``alpha[r0 : r0 + m]``.
    lower, y, z, grad, scale, order, state : 1-d arrays
        Scratch of at least ``m * (m + 1) // 2`` (the first) or ``m`` elements (the last two integer):
        the Cholesky factor ``L`` of the passive block packed by rows (``L[r, c]`` at
        ``lower[r * (r + 1) // 2 + c]``, with ``1 / L[r, r]`` on the diagonal: the solves multiply
        instead of dividing), ``L^-1 b_P``, the passive solution, the negative gradient ``b - G a``,
        ``1 / ||s_j||``, the passive indices in factor order and the state of every column. A new row
        of ``L`` is computed by dot products with the rows before it, along contiguous memory, and the
        packed factor is small enough to stay in the L1 cache beside ``G``.

    Returns
    -------
    int
        ``CONVERGED``, ``ITERATION_LIMIT`` or ``KKT_VIOLATED``.
    """
    for j in range(m):
        alpha[r0 + j] = 0.0
        scale[j] = 1.0 / math.sqrt(gram[g0 + j * m + j])
        state[j] = _FREE
    n_passive = 0  # passive columns, order[:n_passive]
    n_factored = 0  # leading rows of the factor that are up to date
    status = ITERATION_LIMIT
    warm = True
    for _ in range(4 * m + 20):
        if warm:
            for j in range(m):
                if start[r0 + j] > 0.0:
                    order[n_passive] = j
                    state[j] = _PASSIVE
                    n_passive += 1
        else:
            enter = -1
            best = ENTER_TOL * t_norm
            for j in range(m):
                if state[j] == _FREE and grad[j] * scale[j] > best:
                    best = grad[j] * scale[j]
                    enter = j
            if enter < 0:
                status = CONVERGED
                break
            order[n_passive] = enter
            state[enter] = _PASSIVE
            n_passive += 1
        while True:
            # Factor the pending rows: row r solves L[r, :r] L[:r, :r]^T = G[order[r], order[:r]], entry by
            # entry (a dot product with an earlier row), and y[r] = (b_r - L[r, :r] y[:r]) / L[r, r]
            # accumulates alongside. A column that depends on those before it is set aside (in exact
            # arithmetic its gradient is 0).
            r = n_factored
            while r < n_passive:
                column = order[r]
                row = r * (r + 1) // 2
                for c in range(r):
                    lower[row + c] = gram[g0 + column * m + order[c]]
                norm_sq = 0.0
                projected = rhs[r0 + column]
                c = 0
                while c < r:
                    # Entries c and c + 1 side by side: two independent dot products with the entries
                    # before them (each gets the same operations, in the same order, as on its own).
                    first = c * (c + 1) // 2
                    pair = c + 1 < r
                    second = first + c + 1 if pair else first
                    value = lower[row + c]
                    following = lower[row + c + 1] if pair else value
                    for q in range(c):
                        value -= lower[row + q] * lower[first + q]
                        following -= lower[row + q] * lower[second + q]
                    value *= lower[first + c]
                    lower[row + c] = value
                    norm_sq += value * value
                    projected -= value * y[c]
                    if pair:
                        following = (following - value * lower[second + c]) * lower[second + c + 1]
                        lower[row + c + 1] = following
                        norm_sq += following * following
                        projected -= following * y[c + 1]
                    c += 2
                pivot = gram[g0 + column * m + column] - norm_sq
                if pivot <= DEPENDENCE_TOL * gram[g0 + column * m + column]:
                    state[column] = _SET_ASIDE
                    alpha[r0 + column] = 0.0
                    n_passive -= 1
                    for q in range(r, n_passive):
                        order[q] = order[q + 1]
                    continue
                lower[row + r] = 1.0 / math.sqrt(pivot)
                y[r] = projected * lower[row + r]
                r += 1
            n_factored = n_passive
            # Unconstrained solution on the passive set: L^T z = y.
            for r in range(n_passive):
                z[r] = y[r]
            for r in range(n_passive - 1, -1, -1):
                row = r * (r + 1) // 2
                solved = z[r] * lower[row + r]
                z[r] = solved
                entries = lower[row:row + r]
                for c in range(r):
                    z[c] -= entries[c] * solved
            # Columns that just entered (weight still 0) and get a non-positive weight leave without
            # a step; otherwise step from alpha towards z until the first passive weight reaches zero.
            fresh_out = False
            step = 1.0
            blocking = -1
            for r in range(n_passive):
                if z[r] <= 0.0:
                    current = alpha[r0 + order[r]]
                    if current == 0.0:
                        fresh_out = True
                    elif current / (current - z[r]) < step:
                        step = current / (current - z[r])
                        blocking = r
            if not fresh_out and blocking < 0:
                for r in range(n_passive):
                    alpha[r0 + order[r]] = z[r]
                break
            # The span shrinks: columns set aside may be independent again.
            for j in range(m):
                if state[j] == _SET_ASIDE:
                    state[j] = _FREE
            kept = 0
            for r in range(n_passive):
                index = order[r]
                current = alpha[r0 + index]
                if fresh_out:
                    updated = current
                    leaves = current == 0.0 and z[r] <= 0.0
                else:
                    updated = current + step * (z[r] - current)
                    leaves = r == blocking or updated <= 0.0
                if leaves:
                    alpha[r0 + index] = 0.0
                    # A single entering column that cannot move would only enter again: set it aside.
                    state[index] = _SET_ASIDE if fresh_out and not warm else _FREE
                    n_factored = min(n_factored, r)
                else:
                    alpha[r0 + index] = updated
                    order[kept] = index
                    kept += 1
            n_passive = kept
        warm = False
        # (The loops over columns index views from 0: the compiler can drop the negative-index checks
        # and vectorise them.)
        own_rhs = rhs[r0:r0 + m]
        for j in range(m):
            grad[j] = own_rhs[j]
        for r in range(n_passive):
            weight = alpha[r0 + order[r]]
            base = g0 + order[r] * m
            gram_row = gram[base:base + m]
            for j in range(m):
                grad[j] -= gram_row[j] * weight
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
    row-major) starts at ``gram[gram_offset[p]]``; its right-hand side, its starting weights, and its
    solution in an array shaped like ``rhs``, start at ``rhs_offset[i]``; ``t_norm[i] = ||t'||``.
    """

    gram: np.ndarray
    gram_offset: np.ndarray
    sizes: np.ndarray
    rhs: np.ndarray
    start: np.ndarray
    rhs_offset: np.ndarray
    item_manifold: np.ndarray
    t_norm: np.ndarray


#: Ridge, relative to the mean diagonal of ``G``, of the unconstrained solve that gives the starting
#: weights (so that repeated or collinear points, which make ``G`` singular, need no special case).
START_RIDGE = 1e-10


def unconstrained_weights(gram, rhs_rows, out) -> None:
    """``b^T (G + ridge)^-1`` for every t vector of one manifold, the starting guess of the active set.

    Parameters
    ----------
    gram : ndarray, (M, M)
    rhs_rows : ndarray, (n_t, M)
        ``b^T`` of every t vector.
    out : ndarray, (n_t, M)
        Receives the weights.
    """
    size = gram.shape[0]
    ridge = START_RIDGE * np.trace(gram) / size * np.eye(size)
    np.matmul(rhs_rows, np.linalg.inv(gram + ridge), out=out)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Start of each of consecutive blocks of the given lengths."""
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def pack_problems(points, t_vecs, kappa) -> PackedProblems:
    """Gram matrices (once per manifold), right-hand sides ``S^T t'`` and starting weights of every t vector.

    Every block is computed in place in the flat arrays.

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
    gram_offset = _offsets(sizes**2)
    block_offset = _offsets(sizes * n_t)
    first_item = _offsets(n_t)
    item_manifold = np.repeat(np.arange(len(points), dtype=np.int64), n_t)
    within = np.arange(item_manifold.size, dtype=np.int64) - first_item[item_manifold]
    gram = np.empty(int(np.sum(sizes**2)))
    rhs = np.empty(int(np.sum(sizes * n_t)))
    start = np.empty_like(rhs)
    t_norm = np.empty(item_manifold.size)
    for p, (s, t) in enumerate(zip(points, t_vecs)):
        m, n = s.shape[1], t.shape[1]
        manifold_gram = gram[gram_offset[p]:gram_offset[p] + m * m].reshape(m, m)
        np.matmul(s.T, s, out=manifold_gram)
        # b^T = t'^T S with t' = t + kappa e_{D+1}, and S's last row all ones.
        block = slice(block_offset[p], block_offset[p] + m * n)
        rhs_rows = rhs[block].reshape(n, m)
        np.matmul(t.T, s, out=rhs_rows)
        rhs_rows += kappa
        unconstrained_weights(manifold_gram, rhs_rows, start[block].reshape(n, m))
        t_norm[first_item[p]:first_item[p] + n] = np.sqrt(np.sum(t[:-1] ** 2, axis=0) + (t[-1] + kappa) ** 2)
    return PackedProblems(
        gram=gram,
        gram_offset=gram_offset,
        sizes=sizes,
        rhs=rhs,
        start=start,
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


def repair_unconverged(points, t_vecs, kappa, packed: PackedProblems, alpha, status) -> None:
    """Re-solve every problem whose active-set solve failed, with scipy's NNLS, in place.

    The Gram form squares the conditioning: points closer than about 1e-7 of their norm (near
    duplicates) cannot be told apart from exact duplicates, and the KKT check of such a solve fails.
    scipy's Lawson-Hanson works on ``S`` itself with Householder reflections, exact to rounding; it is
    slower, but such problems are rare.
    """
    from scipy.optimize import nnls

    first_item = np.searchsorted(packed.item_manifold, np.arange(len(points)))
    for item in np.flatnonzero(status != CONVERGED):
        p = packed.item_manifold[item]
        shifted = t_vecs[p][:, item - first_item[p]].copy()
        shifted[-1] += kappa
        start = packed.rhs_offset[item]
        alpha[start:start + packed.sizes[p]] = nnls(points[p], shifted, maxiter=50 * packed.sizes[p])[0]


# IEEE division (no zero-divisor check): every divisor is a positive pivot or norm.
_nnls_gram_cpu = numba.njit(cache=True, error_model="numpy")(nnls_gram)

#: Work items handled in sequence by one parallel task (scratch is allocated once per chunk).
CHUNK = 32


@numba.njit(parallel=True, cache=True)
def _solve_items(gram, gram_offset, sizes, rhs, start, rhs_offset, item_manifold, t_norm, alpha, status):
    n_items = item_manifold.size
    largest = sizes.max()
    for chunk in numba.prange((n_items + CHUNK - 1) // CHUNK):
        lower = np.empty(largest * (largest + 1) // 2)
        vectors = np.empty((4, largest))
        order = np.empty(largest, dtype=np.int64)
        state = np.empty(largest, dtype=np.int64)
        for item in range(chunk * CHUNK, min(n_items, (chunk + 1) * CHUNK)):
            p = item_manifold[item]
            status[item] = _nnls_gram_cpu(
                gram, gram_offset[p], sizes[p], rhs, start, rhs_offset[item], t_norm[item], alpha,
                lower, vectors[0], vectors[1], vectors[2], vectors[3], order, state,
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

    Notes
    -----
    A solve that fails its final KKT check (near-duplicate points) is redone by
    :func:`repair_unconverged`.
    """
    kappa = float(kappa)
    packed = pack_problems(points, t_vecs, kappa)
    alpha, status = solve_packed(packed)
    repair_unconverged(points, t_vecs, kappa, packed, alpha, status)
    return unpack_residuals(points, t_vecs, alpha)
