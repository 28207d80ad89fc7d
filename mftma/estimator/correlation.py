"""Center correlation and removal of the low-rank structure shared by the manifold centers.

docs/method.md §2.2-2.4. The centers (minus their mean) are written in an orthonormal basis of
their span, ``X`` of shape (P, d) with ``d = min(N, P - 1)``. For each rank ``K = 1, 2, ...`` an
orthonormal ``V`` (d, K) minimising

    F(V) = 1/2 sum_{mu,nu} (C_mu,nu - c_mu . c_nu)^2 / (c0_mu c0_nu),
    C = X X^T,  c = X V,  c0_mu = C_mu,mu - |c_mu|^2,

is searched from ``n_reps`` warm starting points (a random direction beside the rank below's
solution) and as many uniformly random ones, and the solution that keeps the largest minimum
fraction of a center's norm (the reference's "stability") among all of them is kept. Warm starts
alone let one poor rank-1 choice trap every restart above it; random ones alone miss optima that
the warm ones find. The share of restarts reaching the kept optimum and the runner-up rank are
reported (:class:`CenterStructure`), so that results can flag a choice another seed might change. The loop stops when the
residual correlation rose three times in a row, and K* minimises the residual mean |correlation|,
as in the reference implementation. The K* directions are projected out of every manifold
(:func:`remove_center_structure`).

Optimiser: a small Riemannian L-BFGS of our own, compiled with numba, with the analytic gradient.
``F`` only depends on the span of ``V``, so it is optimised on the Grassmann manifold: the Riemannian
gradient is ``(I - V V^T) grad F``, a step is retracted by re-orthonormalising ``V + step``, and the
L-BFGS direction is projected the same way. The restarts of one rank run in parallel threads to a
gradient norm of 1e-3 (screening: enough to tell their optima apart and rank them); the one kept then
continues, like the reference's pymanopt conjugate gradient, to a gradient norm of 1e-6 (or 1000
iterations). This costs about half of refining every restart. We chose this over pymanopt >= 2 (which
fits the problem, with our analytic gradient) because its per-iteration Python overhead (about 3 ms on a 2-core machine, against tens of
microseconds for the cost and gradient at P = 100) made the 10 restarts times several ranks take
seconds, far above the estimator's whole time budget; L-BFGS took fewer iterations than conjugate
gradient on the golden cases.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numba
import numpy as np

from mftma.errors import InputError, MFTMAWarning
from mftma.estimator import DEFAULT_N_REPS
from mftma.estimator.threads import map_in_threads

#: Rank search stops once the residual correlation rose this many times in a row (reference).
RISES_TO_STOP = 3
#: Variance fraction and offset of the reference's largest rank tried.
K_MAX_VARIANCE, K_MAX_OFFSET = 0.95, 10
#: The optimiser stops at this Riemannian gradient norm (pymanopt's default, as in the reference).
GRADIENT_TOL = 1e-6
#: ... or after this many iterations (pymanopt's default) ...
MAX_ITERATIONS = 1000
#: ... or when a step is shorter than this.
MIN_STEP = 1e-10
#: Armijo sufficient-decrease constant and backtracking factor of the line search.
ARMIJO, BACKTRACK = 1e-4, 0.5
#: Largest number of step halvings in one line search.
MAX_BACKTRACKS = 30
#: Number of (step, gradient change) pairs L-BFGS keeps.
MEMORY = 10
#: A center keeping less than this fraction of its squared norm outside V makes the cost +inf.
RESIDUAL_FLOOR = 1e-12
#: Uniformly random restarts per rank, per warm one (see :func:`_starting_points`).
RANDOM_PER_WARM = 1
#: Restarts are optimised to this Riemannian gradient norm (screening); only the one kept is then refined
#: to GRADIENT_TOL. Screened solutions already rank the optima by stability as refined ones do (checked
#: on golden cases and real layers), at about half the iterations.
SCREENING_TOL = 1e-3
#: Two screened restarts reached the same optimum when the projectors on their subspaces differ by less
#: than this (Frobenius norm; screened solutions of one optimum differ by up to a few 1e-2, distinct
#: optima of real layers by 0.1 or more).
SAME_OPTIMUM = 5e-2
#: A manifold whose center keeps less than this fraction of its norm after the common directions are
#: removed gets a warning (its radius is relative to that remainder).
KEPT_NORM_WARNING = 0.01


@dataclass(frozen=True)
class CenterStructure:
    """The low-rank structure of the manifold centers.

    Attributes
    ----------
    center_correlation : float
        Mean absolute cosine between distinct centers (after subtracting the mean center).
    K : int
        Number of common directions removed (0 when there is nothing to remove, P = 2).
    residual_correlations : ndarray, (number of ranks tried,)
        Mean absolute cosine left after removing K = 1, 2, ... directions.
    directions : ndarray, (N, K)
        Orthonormal common directions, in feature space.
    agreements : ndarray, (number of ranks tried,)
        Share of each rank's restarts that reached the optimum kept for it (the same subspace,
        see :data:`SAME_OPTIMUM`): low values flag a choice that another draw could change.
    """

    center_correlation: float
    K: int
    residual_correlations: np.ndarray
    directions: np.ndarray
    agreements: np.ndarray

    @property
    def objective(self) -> float:
        """The residual mean |correlation| that chose K (the center correlation when K = 0)."""
        return float(self.residual_correlations[self.K - 1]) if self.K else self.center_correlation

    @property
    def agreement(self) -> float:
        """Share of rank K's restarts that reached the chosen optimum (1 when K = 0: nothing was searched)."""
        return float(self.agreements[self.K - 1]) if self.K else 1.0

    @property
    def runner_up(self) -> tuple[int, float]:
        """``(K, residual correlation)`` of the best other rank tried; ``(0, center_correlation)``
        (removing nothing) when no other rank was tried."""
        others = [(value, rank) for rank, value in enumerate(self.residual_correlations, 1) if rank != self.K]
        if not others:
            return 0, self.center_correlation
        value, rank = min(others)
        return rank, float(value)


def mean_abs_correlation(gram: np.ndarray) -> float:
    """Mean absolute off-diagonal cosine of vectors given by their Gram matrix.

    Parameters
    ----------
    gram : ndarray, (P, P)
        Inner products of P nonzero vectors.

    Returns
    -------
    float
        ``(sum |cos| - P) / (P (P - 1))``.
    """
    norms = np.sqrt(np.diag(gram))
    count = gram.shape[0]
    return float((np.sum(np.abs(gram / np.outer(norms, norms))) - count) / (count * (count - 1)))


#: Eigen-directions of the centers' Gram matrix with less than this fraction of the largest eigenvalue
#: are left out of their basis: they hold no variance to speak of, and rounding errors there would be
#: amplified by the inverse square root that maps coordinates back to feature space.
RANK_TOL = 1e-12


@dataclass(frozen=True)
class CentersBasis:
    """The manifold centers minus their mean, in an orthonormal basis of their span.

    The basis is ``shifted @ to_span``: the eigenvectors of the centers' Gram matrix scaled by the
    inverse square roots of the eigenvalues, which avoids a QR factorisation of the (N, P) centers
    (ten times slower at N = 5000, P = 100).

    Attributes
    ----------
    coordinates : ndarray, (P, d)
        Row mu holds center mu's coordinates, ``d = min(N, P - 1)`` (fewer if the centers span less).
    shifted : ndarray, (N, P)
        The centers minus their mean.
    to_span : ndarray, (P, d)
        Maps combinations of the centers to the basis.
    """

    coordinates: np.ndarray
    shifted: np.ndarray
    to_span: np.ndarray

    def directions(self, vectors: np.ndarray) -> np.ndarray:
        """Orthonormal feature-space directions spanning the basis combinations ``vectors`` (d, K)."""
        return np.linalg.qr(self.shifted @ (self.to_span @ vectors))[0]


def centers_basis(centers: np.ndarray) -> CentersBasis:
    """The centers minus their mean, in an orthonormal basis of their span.

    Parameters
    ----------
    centers : ndarray, (N, P)
        Manifold centers as columns.

    Returns
    -------
    CentersBasis
    """
    shifted = centers - centers.mean(axis=1, keepdims=True)
    eigenvalues, vectors = np.linalg.eigh(shifted.T @ shifted)
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    largest = max(eigenvalues[0], 0.0)
    dim = min(centers.shape[0], centers.shape[1] - 1, int(np.count_nonzero(eigenvalues > RANK_TOL * largest)))
    roots = np.sqrt(eigenvalues[:dim])
    return CentersBasis(vectors[:, :dim] * roots, shifted, vectors[:, :dim] / roots)


def largest_rank(coordinates: np.ndarray) -> int:
    """The largest number of common directions to try.

    The reference's rule (singular values below 95 % cumulative variance, plus 10, at least 11),
    capped at ``d - 1`` so that every center keeps a nonzero residual (0 for P = 2).

    Parameters
    ----------
    coordinates : ndarray, (P, d)
        Centers in an orthonormal basis (:func:`centers_basis`).

    Returns
    -------
    int
    """
    variance = np.linalg.svd(coordinates, compute_uv=False) ** 2
    below = int(np.count_nonzero(np.cumsum(variance / variance.sum()) < K_MAX_VARIANCE))
    return min(max(below, 1) + K_MAX_OFFSET, coordinates.shape[1] - 1)


@numba.njit(cache=True)
def _cost_terms(coordinates, gram, directions, with_gradient):
    """F(V) and, if ``with_gradient``, ``dF/dc = 2 diag(b / c0) c - 2 A c`` for ``c = X V``.

    With ``R = C - c c^T``, ``A = R / (c0 c0^T)`` and ``b`` the row sums of ``R * A`` (a matrix-vector
    product). The diagonal of ``A`` and ``b`` may be left in the gradient: its two contributions
    cancel.
    """
    count, rank = coordinates.shape[0], directions.shape[1]
    projections = coordinates @ directions
    inverse = np.empty(count)
    for mu in range(count):
        norm = gram[mu, mu]
        for k in range(rank):
            norm -= projections[mu, k] ** 2
        if norm <= RESIDUAL_FLOOR * gram[mu, mu]:
            # A center (numerically) inside the span of V: the cost's barrier, F = +inf.
            return np.inf, np.zeros_like(projections)
        inverse[mu] = 1.0 / norm
    # R and R * R row by row, each row one vectorised pass per direction.
    transposed = np.ascontiguousarray(projections.T)
    residual = gram.copy()
    squared = np.empty_like(gram)
    for mu in range(count):
        row = residual[mu]
        for k in range(rank):
            weight, column = projections[mu, k], transposed[k]
            for nu in range(count):
                row[nu] -= weight * column[nu]
        for nu in range(count):
            squared[mu, nu] = row[nu] * row[nu]
    row_sums = inverse * (squared @ inverse)
    cost = 0.5 * np.sum(row_sums)
    if not with_gradient:
        return cost, projections
    for mu in range(count):
        for nu in range(count):
            residual[mu, nu] *= inverse[mu] * inverse[nu]
    return cost, 2.0 * (row_sums * inverse)[:, None] * projections - 2.0 * (residual @ projections)


@numba.njit(cache=True)
def _cost(coordinates, gram, directions):
    """The cost F(V)."""
    return _cost_terms(coordinates, gram, directions, False)[0]


@numba.njit(cache=True)
def _cost_and_gradient(coordinates, gram, directions):
    """F(V) and its Euclidean gradient ``X^T dF/dc``."""
    cost, inner = _cost_terms(coordinates, gram, directions, True)
    return cost, coordinates.T @ inner


@numba.njit(cache=True)
def _orthonormalize(matrix):
    """Orthonormal columns spanning ``matrix``'s (twice-applied modified Gram-Schmidt)."""
    rows = np.ascontiguousarray(matrix.T)
    for _ in range(2):
        for j in range(rows.shape[0]):
            for i in range(j):
                rows[j] -= np.dot(rows[i], rows[j]) * rows[i]
            rows[j] /= np.sqrt(np.dot(rows[j], rows[j]))
    return np.ascontiguousarray(rows.T)


@numba.njit(cache=True)
def _horizontal(directions, vector):
    """Projection of ``vector`` onto the tangent (horizontal) space at ``directions``."""
    return vector - directions @ (directions.T @ vector)


@numba.njit(cache=True)
def _inner(first, second):
    """Frobenius inner product of two contiguous matrices of the same shape."""
    return np.dot(first.reshape(-1), second.reshape(-1))


@numba.njit(cache=True)
def _add_scaled(target, scale, addend):
    """``target += scale * addend`` in place, for contiguous matrices (one flat, vectorised loop)."""
    flat_target, flat_addend = target.reshape(-1), addend.reshape(-1)
    for i in range(flat_target.size):
        flat_target[i] += scale * flat_addend[i]


@numba.njit(cache=True)
def _two_loop(gradient, steps, changes, inverse_curvatures, count, newest):
    """L-BFGS direction ``-H grad`` from the ``count`` stored pairs (``newest`` is the latest slot).

    ``inverse_curvatures[slot]`` is ``1 / (step . change)`` of the pair in ``slot``.
    """
    memory = steps.shape[0]
    direction = -gradient
    weights = np.empty(memory)
    for k in range(count):
        slot = (newest - k) % memory
        weights[slot] = inverse_curvatures[slot] * _inner(steps[slot], direction)
        _add_scaled(direction, -weights[slot], changes[slot])
    if count > 0:
        direction *= 1.0 / (inverse_curvatures[newest] * _inner(changes[newest], changes[newest]))
    for k in range(count - 1, -1, -1):
        slot = (newest - k) % memory
        correction = inverse_curvatures[slot] * _inner(changes[slot], direction)
        _add_scaled(direction, weights[slot] - correction, steps[slot])
    return direction


@numba.njit(nogil=True, cache=True)
def _lbfgs(coordinates, gram, start, max_iterations, gradient_tol):
    """Riemannian L-BFGS with Armijo backtracking from ``start``.

    The stored pairs are not transported between tangent spaces; the direction they give is
    projected onto the current one instead (as many iterations as transporting every pair by
    projection, at a fraction of the cost). Returns the final directions and the number of iterations.
    """
    memory = MEMORY
    directions = start.copy()
    cost, euclidean = _cost_and_gradient(coordinates, gram, directions)
    gradient = _horizontal(directions, euclidean)
    steps = np.zeros((memory,) + directions.shape)
    changes = np.zeros((memory,) + directions.shape)
    inverse_curvatures = np.zeros(memory)
    count, newest = 0, memory - 1
    iteration = 0
    while iteration < max_iterations and np.sqrt(_inner(gradient, gradient)) > gradient_tol:
        search = _horizontal(directions, _two_loop(gradient, steps, changes, inverse_curvatures, count, newest))
        slope = _inner(gradient, search)
        if slope >= 0.0:
            search = -gradient
            slope = -_inner(gradient, gradient)
            count = 0
        step = 1.0 if count > 0 else min(1.0, 1.0 / np.sqrt(_inner(search, search)))
        trial = _orthonormalize(directions + step * search)
        trial_cost, euclidean = _cost_and_gradient(coordinates, gram, trial)
        backtracks = 0
        while trial_cost > cost + ARMIJO * step * slope and backtracks < MAX_BACKTRACKS:
            step *= BACKTRACK
            trial = _orthonormalize(directions + step * search)
            trial_cost = _cost(coordinates, gram, trial)
            backtracks += 1
        if trial_cost > cost or step * np.sqrt(_inner(search, search)) < MIN_STEP:
            break
        if backtracks > 0:
            trial_cost, euclidean = _cost_and_gradient(coordinates, gram, trial)
        trial_gradient = _horizontal(trial, euclidean)
        step_taken = _horizontal(trial, step * search)
        change = trial_gradient - _horizontal(trial, gradient)
        curvature = _inner(step_taken, change)
        if curvature > 1e-12 * np.sqrt(_inner(step_taken, step_taken) * _inner(change, change)):
            newest = (newest + 1) % memory
            steps[newest] = step_taken
            changes[newest] = change
            inverse_curvatures[newest] = 1.0 / curvature
            count = min(count + 1, memory)
        directions, cost, gradient = trial, trial_cost, trial_gradient
        iteration += 1
    return directions, iteration


def _optimize_restarts(coordinates, gram, starts, max_iterations, gradient_tol):
    """Run :func:`_lbfgs` from each of ``starts`` (n, d, K) in parallel threads.

    Threads rather than a ``parallel=True`` kernel: the optimiser releases the GIL, and a parallel
    kernel around it would cost ~35 s of compilation on a fresh install, more than the optimiser's own
    (~25 s).
    Returns the solutions (n, d, K) and each one's number of iterations.
    """
    def optimize(restart):
        return _lbfgs(coordinates, gram, np.ascontiguousarray(starts[restart]), max_iterations, gradient_tol)

    solutions, iterations = zip(*map_in_threads(optimize, len(starts)))
    return np.stack(solutions), np.asarray(iterations)


def _starting_points(
    coordinates: np.ndarray, previous: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Starting points for the next rank: ``count`` warm ones and :data:`RANDOM_PER_WARM` times as many
    uniformly random ones.

    A warm start is a random combination of the centers beside ``previous`` (the rank below's
    solution; the initialisation the reference implementation builds, though its optimiser then
    started at random). A random start is uniform on the Grassmann manifold (the QR factor of a
    Gaussian matrix), so that a poor rank-(K-1) choice cannot trap every restart of rank K. The
    draws come from ``rng`` in this order, independent of the threads that optimise them.

    Returns
    -------
    ndarray, ((1 + RANDOM_PER_WARM) count, d, K + 1)
    """
    dim, rank = coordinates.shape[1], previous.shape[1] + 1
    starts = []
    for _ in range(count):
        combination = coordinates.T @ rng.standard_normal(coordinates.shape[0])
        starts.append(np.linalg.qr(np.column_stack([combination, previous]))[0])
    for _ in range(RANDOM_PER_WARM * count):
        starts.append(np.linalg.qr(rng.standard_normal((dim, rank)))[0])
    return np.stack(starts)


def _stabilities(coordinates: np.ndarray, gram: np.ndarray, solutions: np.ndarray) -> np.ndarray:
    """Each solution's stability: the smallest fraction of a center's squared norm it leaves outside."""
    squared_norms = np.diag(gram)
    projections = np.einsum("pd,rdk->rpk", coordinates, solutions)
    return np.min((squared_norms - np.sum(projections**2, axis=2)) / squared_norms, axis=1)


def _agreement(solutions: np.ndarray, chosen: int) -> float:
    """Share of ``solutions`` spanning the same subspace as ``solutions[chosen]`` (see :data:`SAME_OPTIMUM`)."""
    projector = solutions[chosen] @ solutions[chosen].T
    distances = [np.linalg.norm(v @ v.T - projector) for v in solutions]
    return float(np.mean(np.asarray(distances) < SAME_OPTIMUM))


def _stop_rule(residuals: list[float]) -> bool:
    """True once the residual correlation rose ``RISES_TO_STOP`` times in a row (reference, K > 4)."""
    if len(residuals) <= RISES_TO_STOP + 1:
        return False
    recent = residuals[-RISES_TO_STOP - 1 :]
    return all(later > earlier for earlier, later in zip(recent, recent[1:]))


def low_rank_center_structure(
    centers: np.ndarray,
    n_reps: int = DEFAULT_N_REPS,
    rng: np.random.Generator | None = None,
    progress: bool = False,
) -> CenterStructure:
    """Find the common low-rank structure of the manifold centers (docs/method.md §2.2-2.3).

    Parameters
    ----------
    centers : ndarray, (N, P)
        Manifold centers as columns, P >= 2.
    n_reps : int
        Warm restarts per rank; :data:`RANDOM_PER_WARM` times as many uniformly random ones are added.
    rng : numpy.random.Generator, optional
        Source of the random starting points (a fresh unseeded one if None).
    progress : bool
        Show a progress bar over ranks.

    Returns
    -------
    CenterStructure

    Raises
    ------
    InputError
        If a center equals the mean of all centers.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> shared = rng.standard_normal((50, 1))
    >>> centers = shared + 0.3 * rng.standard_normal((50, 12))
    >>> structure = low_rank_center_structure(centers, n_reps=2, rng=rng)
    >>> structure.directions.shape[0], structure.K >= 1
    (50, True)
    """
    from mftma.progress import progress_bar

    rng = np.random.default_rng() if rng is None else rng
    basis = centers_basis(centers)
    coordinates = basis.coordinates
    gram = coordinates @ coordinates.T
    at_mean = np.flatnonzero(np.einsum("ij,ij->j", basis.shifted, basis.shifted) == 0.0)
    if at_mean.size:
        raise InputError(
            f"manifold {at_mean[0]}: its center equals the mean of all centers, so the center correlation "
            "is undefined; drop it or check the data"
        )
    correlation = mean_abs_correlation(gram)
    dim = coordinates.shape[1]
    solutions, residuals, agreements = [], [], []
    for rank in progress_bar(range(1, largest_rank(coordinates) + 1), desc="center structure", enabled=progress):
        starts = _starting_points(coordinates, solutions[-1] if solutions else np.zeros((dim, 0)), n_reps, rng)
        candidates, _ = _optimize_restarts(coordinates, gram, starts, MAX_ITERATIONS, SCREENING_TOL)
        stabilities = _stabilities(coordinates, gram, candidates)
        chosen = int(np.argmax(stabilities))
        if stabilities[chosen] <= RESIDUAL_FLOOR:
            break  # every restart left a center inside the directions: higher ranks cannot do better
        agreements.append(_agreement(candidates, chosen))
        solution, _ = _lbfgs(coordinates, gram, candidates[chosen], MAX_ITERATIONS, GRADIENT_TOL)
        projections = coordinates @ solution
        solutions.append(solution)
        residuals.append(mean_abs_correlation(gram - projections @ projections.T))
        if _stop_rule(residuals):
            break
    if not solutions:
        return CenterStructure(correlation, 0, np.empty(0), np.zeros((centers.shape[0], 0)), np.empty(0))
    best_rank = int(np.argmin(residuals)) + 1
    return CenterStructure(
        correlation,
        best_rank,
        np.asarray(residuals),
        basis.directions(solutions[best_rank - 1]),
        np.asarray(agreements),
    )


def _projected_center_norm(center: np.ndarray, directions: np.ndarray, index: int) -> float:
    """Norm of a center (relative to the mean of all points) without the common directions.

    Warns (:class:`~mftma.errors.MFTMAWarning`) when less than :data:`KEPT_NORM_WARNING` of the norm is
    left: the manifold is normalised by that remainder, so its radius comes out very large.
    """
    norm = float(np.linalg.norm(center - directions @ (directions.T @ center)))
    if norm == 0.0:
        raise InputError(
            f"manifold {index}: its center coincides with the mean of all points after removing the "
            "common center structure, so it cannot be normalised; drop it or check the data"
        )
    full = float(np.linalg.norm(center))
    if norm < KEPT_NORM_WARNING * full:
        warnings.warn(
            f"manifold {index}: removing the common center directions leaves {norm / full:.2%} of its "
            "center's norm; its radius and dimension are measured against that remainder and may be outliers",
            MFTMAWarning,
            stacklevel=2,
        )
    return norm


def remove_center_structure(
    manifold: np.ndarray, mean: np.ndarray, origin: np.ndarray, directions: np.ndarray, index: int = 0
) -> np.ndarray:
    """Project the common directions out of one manifold and normalise it (docs/method.md §2.4).

    Parameters
    ----------
    manifold : ndarray, (N, M)
        A validated float64 manifold.
    mean : ndarray, (N,)
        The manifold's mean point.
    origin : ndarray, (N,)
        Mean of all points of all manifolds.
    directions : ndarray, (N, K)
        Orthonormal common directions (:attr:`CenterStructure.directions`).
    index : int
        The manifold's position, for error messages.

    Returns
    -------
    ndarray, (N, M)
        The manifold minus ``origin``, projected on the null space of ``directions``, re-centered
        and divided by the norm of its projected center.

    Raises
    ------
    InputError
        If the projected center is zero (the manifold cannot be normalised).
    """
    norm = _projected_center_norm(mean - origin, directions, index)
    deviations = manifold - mean[:, None]
    deviations -= directions @ (directions.T @ deviations)
    deviations /= norm
    return deviations


def removed_structure_gram(
    manifold: np.ndarray,
    mean: np.ndarray,
    centered_gram: np.ndarray,
    origin: np.ndarray,
    directions: np.ndarray,
    index: int = 0,
) -> np.ndarray:
    """Gram matrix ``S^T S`` of :func:`remove_center_structure`'s output, without forming ``S``.

    Parameters
    ----------
    manifold, mean, origin, directions, index
        As in :func:`remove_center_structure`.
    centered_gram : ndarray, (M, M)
        ``D^T D`` of its deviations from the mean, ``D = manifold - mean``.

    Returns
    -------
    ndarray, (M, M)

    Raises
    ------
    InputError
        If the projected center is zero.
    """
    norm = _projected_center_norm(mean - origin, directions, index)
    along = _transposed_product(directions, manifold) - (directions.T @ mean)[:, None]
    return (centered_gram - along.T @ along) / norm**2


@numba.njit(nogil=True, cache=True)
def _transposed_product(directions, manifold):
    """``directions.T @ manifold`` (K, M) in one pass over the rows of a C-ordered manifold.

    Without the GIL, so that the threads reducing manifolds run in parallel (numpy's product of a
    few directions with a manifold did not speed up with a second thread).
    """
    product = np.zeros((directions.shape[1], manifold.shape[1]))
    for i in range(manifold.shape[0]):
        for k in range(directions.shape[1]):
            weight = directions[i, k]
            for j in range(manifold.shape[1]):
                product[k, j] += weight * manifold[i, j]
    return product
