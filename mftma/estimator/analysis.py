"""Mean-field manifold analysis of P manifolds, end to end (docs/method.md §2).

:func:`analyze_manifolds` validates the input, removes the common center structure
(:mod:`~mftma.estimator.correlation`), reduces every manifold to at most M dimensions, appends the
constant coordinate, draws (or takes) t vectors and hands the points to the anchor-point solvers
(:mod:`~mftma.estimator.anchor`). :class:`ManifoldAnalysis` wraps it as a scikit-learn style estimator.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from mftma.errors import InputError
from mftma.estimator import DEFAULT_KAPPA, DEFAULT_N_REPS, DEFAULT_N_T
from mftma.estimator.anchor import anchor_geometry
from mftma.estimator.backends import select_backend
from mftma.estimator.correlation import (
    low_rank_center_structure,
    remove_center_structure,
    removed_structure_gram,
)
from mftma.estimator.threads import map_in_threads
from mftma.estimator.validation import check_count, check_finite, check_kappa, check_manifolds, check_t_vecs


@dataclass(frozen=True)
class GeometryResult:
    """Capacity, radius and dimension of P manifolds, with their center correlation.

    Attributes
    ----------
    capacity, radius, dimension : ndarray, (P,)
        Per manifold.
    center_correlation : float
        Mean absolute cosine between the manifold centers, before removing their common structure.
    K : int
        Number of common center directions removed.
    structure : dict
        How decided the center-structure search was (``mftma.estimator.correlation``):
        ``structure_agreement``, the share of rank K's restarts that reached the chosen optimum;
        ``structure_objective``, the residual mean |correlation| that chose K; ``runner_up_objective``
        and ``runner_up_K``, those of the best other rank tried (0 and the center correlation when no
        other rank was tried). A low agreement or a runner-up close to the objective flags a cell
        whose K or directions another seed could change.
    settings : dict
        ``kappa``, ``n_t``, ``n_reps``, ``seed``, ``backend`` (resolved) and ``t_vecs``
        (``"given"`` or ``"seeded"``).
    timings : dict
        Seconds per stage: ``validation``, ``moments`` (means and Gram matrices), ``center_structure``,
        ``reduction``, ``anchor_points``, ``total``.
    """

    capacity: np.ndarray
    radius: np.ndarray
    dimension: np.ndarray
    center_correlation: float
    K: int
    structure: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    @property
    def capacity_avg(self) -> float:
        """Capacity of all manifolds together: the inverse of the mean inverse capacity."""
        return float(1.0 / np.mean(1.0 / self.capacity))

    @property
    def radius_avg(self) -> float:
        """Mean radius."""
        return float(np.mean(self.radius))

    @property
    def dimension_avg(self) -> float:
        """Mean dimension."""
        return float(np.mean(self.dimension))

    def summary(self) -> dict:
        """The averages, ``center_correlation``, ``K`` and the :attr:`structure` entries, keyed by those names."""
        return {
            "capacity": self.capacity_avg,
            "radius": self.radius_avg,
            "dimension": self.dimension_avg,
            "center_correlation": self.center_correlation,
            "K": self.K,
            **self.structure,
        }

    def to_frame(self):
        """A tidy table: one row per (manifold, metric), and summary rows with ``manifold`` missing.

        Returns
        -------
        pandas.DataFrame
            Columns ``manifold`` (nullable integer), ``metric`` and ``value``. Per-manifold metrics are
            ``capacity``, ``radius`` and ``dimension``; the summary rows hold :meth:`summary`.
        """
        import pandas as pd

        count = len(self.capacity)
        per_manifold = pd.DataFrame(
            {
                "manifold": np.tile(np.arange(count), 3),
                "metric": np.repeat(["capacity", "radius", "dimension"], count),
                "value": np.concatenate([self.capacity, self.radius, self.dimension]),
            }
        )
        averages = self.summary()
        summary = pd.DataFrame({"manifold": pd.NA, "metric": list(averages), "value": list(averages.values())})
        frame = pd.concat([per_manifold, summary], ignore_index=True)
        return frame.astype({"manifold": "Int64", "metric": str, "value": float})


#: Above this ratio of the raw to the centered Gram trace (a mean offset about 30 times the spread),
#: :func:`centered_gram` subtracts the mean from the points instead of double-centering ``X^T X``,
#: which would lose about log10(ratio) digits to cancellation.
OFFSET_RATIO = 1e3


def centered_gram(manifold: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Gram matrix ``D^T D`` of a manifold's deviations from its mean, ``D = manifold - mean``.

    Computed as ``H X^T X H`` with ``H = I - 1 1^T / M``, which saves a copy of the points, unless
    the mean offset dominates the spread (see :data:`OFFSET_RATIO`).

    Parameters
    ----------
    manifold : ndarray, (N, M)
        A validated float64 manifold.
    mean : ndarray, (N,)
        Its mean point.

    Returns
    -------
    ndarray, (M, M)
    """
    raw = manifold.T @ manifold
    column_means = raw.mean(axis=0)
    centered = raw - column_means[:, None] - column_means[None, :] + column_means.mean()
    if np.trace(raw) > OFFSET_RATIO * np.trace(centered):
        deviations = manifold - mean[:, None]
        centered = deviations.T @ deviations
    return centered


@dataclass(frozen=True)
class ManifoldMoments:
    """What the reduction needs of every manifold, computed in one parallel pass over the points.

    Attributes
    ----------
    means : list of P ndarrays, each (N,)
        Mean point of each manifold.
    grams : list of P ndarrays (M_p, M_p) or None
        :func:`centered_gram` where the manifold is reduced through its Gram matrix (N > M_p and
        seeded t vectors), else None.
    """

    means: list
    grams: list


def manifold_moments(manifolds: list[np.ndarray], reference_basis: bool, progress: bool = False) -> ManifoldMoments:
    """Means (and centered Gram matrices, see :class:`ManifoldMoments`) of all manifolds.

    This pass also checks that the values are finite (a NaN or infinity makes its row's mean
    non-finite), so that the points are read once less.

    Parameters
    ----------
    manifolds : list of P ndarrays, each (N, M_p)
        float64 manifolds, validated except for finiteness.
    reference_basis : bool
        See :func:`reduced_points`; True computes no Gram matrix.
    progress : bool
        Show a progress bar.

    Returns
    -------
    ManifoldMoments

    Raises
    ------
    InputError
        If a manifold holds NaN or infinite values, or values whose sum overflows.
    """

    def moments(index):
        manifold = manifolds[index]
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            mean = manifold.mean(axis=1)
        if not np.isfinite(mean).all():
            check_finite(manifold, f"manifold {index}")
            raise InputError(f"manifold {index} has values too large to average (the sum overflows)")
        features, samples = manifold.shape
        return mean, None if reference_basis or features <= samples else centered_gram(manifold, mean)

    means, grams = zip(*map_in_threads(moments, len(manifolds), "moments", progress))
    return ManifoldMoments(list(means), list(grams))


def gram_factor(gram: np.ndarray) -> np.ndarray:
    """Centred points ``S`` (M, M) with ``S^T S = gram``, for a double-centred Gram matrix.

    ``gram + c 1 1^T`` (c its mean diagonal) is positive definite unless the points span fewer than
    M - 1 dimensions; its Cholesky factor, with the mean column subtracted, is such an ``S``, since
    ``H (gram + c 1 1^T) H = gram`` for ``H = I - 1 1^T / M``. Otherwise (duplicated points, say) the
    eigendecomposition gives it. Any such factor gives the same geometry (the points are determined
    up to a rotation, under which Gaussian t vectors are invariant); the Cholesky one is about ten
    times faster at M = 50 and, like the eigendecomposition, changes continuously with the data.

    Parameters
    ----------
    gram : ndarray, (M, M)
        Symmetric positive semidefinite, with rows summing to zero.

    Returns
    -------
    ndarray, (M, M)
    """
    try:
        factor = np.linalg.cholesky(gram + np.trace(gram) / len(gram)).T
    except np.linalg.LinAlgError:
        eigenvalues, vectors = np.linalg.eigh(gram)
        return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))).T[::-1]
    return factor - factor.mean(axis=1, keepdims=True)


def reduced_points(
    manifold: np.ndarray,
    mean: np.ndarray,
    gram: np.ndarray | None,
    origin: np.ndarray,
    directions: np.ndarray,
    index: int,
) -> np.ndarray:
    """One manifold without the common center directions, normalised, in at most M coordinates,
    with the constant coordinate 1 appended (docs/method.md §2.4).

    Parameters
    ----------
    manifold : ndarray, (N, M)
        A validated float64 manifold.
    mean : ndarray, (N,)
        Its mean point.
    gram : ndarray, (M, M), or None
        Its :func:`centered_gram`: the points are the factor of their Gram matrix (:func:`gram_factor`;
        N > M, seeded t vectors). None: in the basis of their economic QR factorisation
        (``Q^T S = R``) when N > M, the reference's coordinates, which given t vectors refer to; both
        give the same geometry (same pairwise inner products), the first many times faster.
    origin : ndarray, (N,)
        Mean of all points of all manifolds.
    directions : ndarray, (N, K)
        Orthonormal common center directions.
    index : int
        The manifold's position, for error messages.

    Returns
    -------
    ndarray, (min(N, M) + 1, M)
    """
    features, samples = manifold.shape
    if gram is not None:
        points = gram_factor(removed_structure_gram(manifold, mean, gram, origin, directions, index))
    else:
        points = remove_center_structure(manifold, mean, origin, directions, index)
        if features > samples:
            points = scipy.linalg.qr(points, mode="raw", overwrite_a=True, check_finite=False)[1]
    return np.vstack([points, np.ones((1, samples))])


def processed_points(
    manifolds: list[np.ndarray], moments: ManifoldMoments, directions: np.ndarray, progress: bool = False
) -> list[np.ndarray]:
    """Every manifold as processed points (:func:`reduced_points`), in parallel threads.

    Parameters
    ----------
    manifolds : list of P ndarrays, each (N, M_p)
        Validated float64 manifolds.
    moments : ManifoldMoments
        Their :func:`manifold_moments`.
    directions : ndarray, (N, K)
        Orthonormal common center directions.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of P ndarrays, each (min(N, M_p) + 1, M_p)
    """
    counts = [m.shape[1] for m in manifolds]
    origin = sum(mean * count for mean, count in zip(moments.means, counts)) / sum(counts)

    def process(index):
        return reduced_points(
            manifolds[index], moments.means[index], moments.grams[index], origin, directions, index
        )

    return map_in_threads(process, len(manifolds), "reduce", progress)


def seeded_t_vecs(dims: list[int], n_t: int, seed: np.random.SeedSequence, progress: bool = False) -> list[np.ndarray]:
    """Gaussian t vectors, (dims[p], n_t) for manifold p, drawn in parallel threads.

    Each manifold draws from its own child of ``seed``, so the result does not depend on the threads.

    Parameters
    ----------
    dims : list of int
        Rows of every manifold's processed points.
    n_t : int
        t vectors per manifold.
    seed : numpy.random.SeedSequence
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of ndarray
    """
    generators = [np.random.default_rng(child) for child in seed.spawn(len(dims))]
    return map_in_threads(
        lambda p: generators[p].standard_normal((dims[p], n_t)), len(dims), "t vectors", progress
    )


def analyze_manifolds(
    manifolds,
    kappa: float = DEFAULT_KAPPA,
    n_t: int = DEFAULT_N_T,
    *,
    t_vecs=None,
    n_reps: int = DEFAULT_N_REPS,
    seed: int | None = None,
    backend: str = "auto",
    progress: bool = False,
) -> GeometryResult:
    """Capacity, radius, dimension and center correlation of P manifolds.

    Parameters
    ----------
    manifolds : list of P array_like (N, M_p), or array_like (P, N, M)
        Features x samples per manifold (M_p may differ); float32 is computed in float64.
    kappa : float
        Margin, >= 0.
    n_t : int
        Number of Gaussian t vectors per manifold.
    t_vecs : list of P array_like (min(N, M_p) + 1, n_t), optional
        t vectors to use instead of seeded ones, in the reference's coordinates (the QR basis of
        each manifold), so that the same t vectors give the reference's numbers.
    n_reps : int
        Warm restarts per rank in the center-structure search; as many uniformly random ones are added.
    seed : int, optional
        Seed of the restarts and t vectors; the result is deterministic given it.
    backend : str
        Anchor-point solver: ``"auto"``, ``"numba"``, ``"cuda"`` or ``"cvxpy"``.
    progress : bool
        Show progress bars.

    Returns
    -------
    GeometryResult

    Raises
    ------
    InputError
        On invalid manifolds, kappa, n_t, n_reps, t_vecs or backend.

    Notes
    -----
    BLAS is limited to one thread during the call: the work is many small products and
    factorisations, which run in parallel over restarts and manifolds instead (a multi-threaded
    BLAS made them an order of magnitude slower on a busy 2-core machine).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clouds = [rng.standard_normal((40, 10)) for _ in range(4)]
    >>> result = analyze_manifolds(clouds, n_t=50, n_reps=2, seed=0)
    >>> result.capacity.shape, result.K >= 0
    ((4,), True)
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _analyze(manifolds, kappa, n_t, t_vecs, n_reps, seed, backend, progress)


def _analyze(manifolds, kappa, n_t, t_vecs, n_reps, seed, backend, progress) -> GeometryResult:
    """:func:`analyze_manifolds` itself, run under a single-threaded BLAS."""
    start = time.perf_counter()
    checked = check_manifolds(manifolds, finite=False)  # finiteness: by manifold_moments
    kappa, n_t, n_reps = check_kappa(kappa), check_count(n_t, "n_t"), check_count(n_reps, "n_reps")
    dims = [min(m.shape) + 1 for m in checked]
    given = t_vecs is not None
    if given:
        t_vecs = check_t_vecs(t_vecs, dims, n_t)
    resolved = select_backend(backend)
    structure_seed, t_seed = np.random.SeedSequence(seed).spawn(2)
    timings = {"validation": time.perf_counter() - start}

    stage = time.perf_counter()
    moments = manifold_moments(checked, given, progress)
    timings["moments"] = time.perf_counter() - stage

    stage = time.perf_counter()
    structure = low_rank_center_structure(
        np.column_stack(moments.means), n_reps, np.random.default_rng(structure_seed), progress
    )
    timings["center_structure"] = time.perf_counter() - stage

    stage = time.perf_counter()
    points = processed_points(checked, moments, structure.directions, progress)
    if not given:
        t_vecs = seeded_t_vecs(dims, n_t, t_seed, progress)
    timings["reduction"] = time.perf_counter() - stage

    stage = time.perf_counter()
    capacity, radius, dimension = anchor_geometry(points, t_vecs, kappa, resolved)
    timings["anchor_points"] = time.perf_counter() - stage
    timings["total"] = time.perf_counter() - start
    settings = {
        "kappa": kappa,
        "n_t": n_t,
        "n_reps": n_reps,
        "seed": seed,
        "backend": resolved,
        "t_vecs": "given" if given else "seeded",
    }
    runner_up_K, runner_up_objective = structure.runner_up
    decision = {
        "structure_agreement": structure.agreement,
        "structure_objective": structure.objective,
        "runner_up_objective": runner_up_objective,
        "runner_up_K": runner_up_K,
    }
    return GeometryResult(
        capacity, radius, dimension, structure.center_correlation, structure.K, decision, settings, timings
    )


class ManifoldAnalysis:
    """Mean-field manifold analysis as a scikit-learn style estimator.

    Parameters
    ----------
    kappa, n_t, n_reps, seed, backend, progress
        As in :func:`analyze_manifolds`.

    Attributes
    ----------
    result_ : GeometryResult
        Set by :meth:`fit`.
    capacity_, radius_, dimension_ : ndarray, (P,)
        Per-manifold results.
    capacity_avg_, radius_avg_, dimension_avg_ : float
        Their averages (``GeometryResult.capacity_avg`` etc.).
    center_correlation_ : float
    K_ : int

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> model = ManifoldAnalysis(n_t=50, n_reps=2, seed=0).fit(rng.standard_normal((4, 40, 10)))
    >>> model.capacity_.shape
    (4,)
    """

    def __init__(self, kappa=DEFAULT_KAPPA, n_t=DEFAULT_N_T, n_reps=DEFAULT_N_REPS, seed=None, backend="auto",
                 progress=False):
        self.kappa = kappa
        self.n_t = n_t
        self.n_reps = n_reps
        self.seed = seed
        self.backend = backend
        self.progress = progress

    def fit(self, manifolds, t_vecs=None) -> "ManifoldAnalysis":
        """Analyse ``manifolds`` (see :func:`analyze_manifolds`) and store the result; returns self."""
        result = analyze_manifolds(
            manifolds,
            self.kappa,
            self.n_t,
            t_vecs=t_vecs,
            n_reps=self.n_reps,
            seed=self.seed,
            backend=self.backend,
            progress=self.progress,
        )
        self.result_ = result
        self.capacity_, self.radius_, self.dimension_ = result.capacity, result.radius, result.dimension
        self.capacity_avg_, self.radius_avg_ = result.capacity_avg, result.radius_avg
        self.dimension_avg_ = result.dimension_avg
        self.center_correlation_, self.K_ = result.center_correlation, result.K
        return self
