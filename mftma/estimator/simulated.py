"""Simulated (empirical) manifold capacity by exact linear-separability tests (docs/method.md §2.10).

Label a random half of the P manifolds +1 and the rest -1, project all points with a random Gaussian matrix
to ``N_c`` dimensions and test whether a hyperplane with bias separates every point. The fraction of
separable dichotomies rises from 0 to 1 with ``N_c``; the ``N_c`` where it crosses one half gives
``alpha_sim = P / N_c``, the quantity the mean-field capacity predicts (ICLR 2021 Fig. 1B).

Each test is exact up to the solver's tolerances: by default a linear program (scipy's HiGHS) that maximises
the margin ``m`` of ``y_i (w . x_i + b) >= m`` with ``|w_j| <= 1``; the points are separable iff ``m > 0``.
The program is always feasible and bounded, so no infeasibility detection is involved. ``method="svm"``
solves the hard-margin SVM through cvxpy instead (slower, a cross-check).
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg
from scipy.optimize import linprog
from scipy.stats import binomtest, norm

from mftma.errors import InputError, MFTMAError
from mftma.estimator.validation import check_count, check_manifolds

#: Optimal margins at or below this (data scaled to unit RMS, |w_j| <= 1) count as not separable.
MARGIN_TOLERANCE = 1e-6
#: Dichotomies tested between early-stopping checks (fixed, so results do not depend on ``n_jobs``).
BATCH_SIZE = 32
#: Confidence of the early-stopping decision that a fraction is clearly above or below one half.
EARLY_STOP_CONFIDENCE = 0.99
METHODS = ("lp", "svm")


@dataclass(frozen=True)
class SimulatedCapacity:
    """Simulated capacity of P manifolds and the separability curve behind it.

    Attributes
    ----------
    alpha : float
        ``P / N_c``.
    ci_low, ci_high : float
        Confidence interval of ``alpha``: ``P`` over the nearest tested ``N_c`` values whose separable
        fraction is significantly above (for ``ci_low``) and below (for ``ci_high``, ``inf`` at 0) one half.
    N_c : float
        Critical number of features, where the separable fraction crosses 0.5 (linear interpolation between
        the two bracketing integers).
    curve : pandas.DataFrame
        One row per tested ``n_features``: ``n_separable``, ``n_dichotomies``, ``fraction`` and its
        Clopper-Pearson interval ``fraction_low``, ``fraction_high``.
    settings : dict
        ``P``, ``n_points``, ``n_dichotomies``, ``precision``, ``confidence``, ``seed``, ``method``, ``n_jobs``.
    timings : dict
        ``total`` seconds and the number of separability tests ``n_tests``.
    """

    alpha: float
    ci_low: float
    ci_high: float
    N_c: float
    curve: pd.DataFrame
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready summary (the curve as a list of records)."""
        return {
            "alpha": self.alpha,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "N_c": self.N_c,
            "curve": self.curve.to_dict(orient="records"),
            "settings": self.settings,
            "timings": self.timings,
        }


def dichotomies_for_precision(precision: float, confidence: float = 0.95) -> int:
    """Dichotomies per ``N_c`` so that a fraction near 1/2 is known to +-``precision`` at ``confidence``.

    The binomial standard error at p = 1/2 is ``0.5 / sqrt(n)``, hence ``n = (z * 0.5 / precision)^2``.

    Examples
    --------
    >>> dichotomies_for_precision(0.05)
    385
    """
    if not 0 < precision < 0.5:
        raise InputError(f"precision must be in (0, 0.5), got {precision}")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    z = norm.ppf(0.5 + confidence / 2)
    return math.ceil((z * 0.5 / precision) ** 2)


def simulated_capacity(
    manifolds,
    *,
    n_dichotomies: int | None = None,
    precision: float = 0.05,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "lp",
    n_jobs: int | None = None,
    progress: bool = False,
) -> SimulatedCapacity:
    """Simulated capacity ``P / N_c`` of P manifolds by bisection on the projection dimension ``N_c``.

    Parameters
    ----------
    manifolds : list of P array_like (N, M_p), or array_like (P, N, M)
        Features x samples per manifold.
    n_dichotomies : int, optional
        Random dichotomies (each with its own projection) per tested ``N_c``; by default enough for
        ``precision`` (see :func:`dichotomies_for_precision`). Values of ``N_c`` whose fraction is clearly
        away from one half stop earlier.
    precision : float
        Wanted half-width of the separable fraction's confidence interval near one half.
    confidence : float
        Confidence level of that interval and of the interval on ``alpha``.
    seed : int
        The result is a deterministic function of the seed (not of ``n_jobs``).
    method : {"lp", "svm"}
        Separability test: HiGHS linear program, or hard-margin SVM through cvxpy.
    n_jobs : int, optional
        Threads running separability tests (the solvers release the GIL); default all available cores.
    progress : bool
        Show a progress bar of the separability tests.

    Returns
    -------
    SimulatedCapacity

    Raises
    ------
    InputError
        On invalid manifolds or arguments, or when fewer than half of the dichotomies are separable even
        with all features (the capacity is then below ``P / N`` and cannot be simulated from this data).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> centers = rng.standard_normal((8, 60, 1))
    >>> clouds = centers + 0.1 * rng.standard_normal((8, 60, 5))
    >>> result = simulated_capacity(clouds, precision=0.15, seed=0, n_jobs=1)
    >>> 0.5 < result.alpha < 2.5 and result.ci_low <= result.alpha <= result.ci_high
    True
    """
    start = time.perf_counter()
    checked = check_manifolds(manifolds)
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    n_max = dichotomies_for_precision(precision, confidence) if n_dichotomies is None else n_dichotomies
    n_max = check_count(n_max, "n_dichotomies")
    n_jobs = _available_cores() if n_jobs is None else check_count(n_jobs, "n_jobs")
    points, owner = _scaled_points(checked)
    tester = _SeparabilityTester(points, owner, len(checked), seed, method, n_jobs, progress)
    try:
        n_critical, low_bound, high_bound = _critical_bracket(tester, n_max, confidence)
    finally:
        tester.close()
    count = len(checked)
    frame = _curve_frame(tester.results, confidence)
    return SimulatedCapacity(
        alpha=count / n_critical,
        ci_low=count / high_bound,
        ci_high=count / low_bound if low_bound > 0 else math.inf,
        N_c=n_critical,
        curve=frame,
        settings={
            "P": count,
            "n_points": points.shape[1],
            "n_dichotomies": n_max,
            "precision": precision,
            "confidence": confidence,
            "seed": seed,
            "method": method,
            "n_jobs": n_jobs,
        },
        timings={"total": time.perf_counter() - start, "n_tests": int(frame["n_dichotomies"].sum())},
    )


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _scaled_points(manifolds: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All points, centered, in the coordinates of their span, scaled to unit RMS; and each point's manifold.

    A Gaussian projection ``G X`` of points ``X = Q R`` (Q orthonormal columns) has the distribution of
    ``G' R`` with ``G'`` Gaussian, so projecting the (at most M_total)-dimensional ``R`` is exact and cheap.
    Centering and scaling do not change separability by a hyperplane with bias.
    """
    points = np.hstack(manifolds)
    points -= points.mean(axis=1, keepdims=True)
    if points.shape[0] > points.shape[1]:
        points = scipy.linalg.qr(points, mode="r", check_finite=False)[0]
    scale = np.sqrt(np.mean(points**2))
    if scale == 0:
        raise InputError("all points coincide: no dichotomy of the manifolds is separable")
    owner = np.repeat(np.arange(len(manifolds)), [m.shape[1] for m in manifolds])
    return points / scale, owner


class _SeparabilityTester:
    """Separable fractions at given ``N_c``, one deterministic random dichotomy per (seed, N_c, index)."""

    def __init__(self, points, owner, count, seed, method, n_jobs, progress):
        from mftma.progress import progress_bar

        self.points, self.owner, self.count, self.seed = points, owner, count, seed
        self.solve = _lp_separable if method == "lp" else _svm_separable
        self.pool = ThreadPoolExecutor(n_jobs) if n_jobs > 1 else None
        self.bar = progress_bar(desc="separability tests", unit="test", enabled=progress)
        self.results: dict[int, list[bool]] = {}

    @property
    def n_features_max(self) -> int:
        """Beyond the dimension of the points' span a projection adds no separability."""
        return min(self.points.shape[0], self.points.shape[1] - 1)

    def counts(self, n_features: int) -> tuple[int, int]:
        """(separable, tested) so far at ``n_features``."""
        outcomes = self.results.get(n_features, [])
        return sum(outcomes), len(outcomes)

    def evaluate(self, n_features: int, n_max: int, stop_early: bool) -> float:
        """Test up to ``n_max`` dichotomies (stopping once clearly off one half if ``stop_early``)."""
        outcomes = self.results.setdefault(n_features, [])
        while len(outcomes) < n_max:
            indices = range(len(outcomes), min(len(outcomes) + BATCH_SIZE, n_max))
            tasks = [(n_features, index) for index in indices]
            mapper = self.pool.map if self.pool is not None else map
            outcomes.extend(mapper(self._test, tasks))
            self.bar.update(len(tasks))
            if stop_early and _clearly_off_half(sum(outcomes), len(outcomes)):
                break
        return sum(outcomes) / len(outcomes)

    def _test(self, task) -> bool:
        n_features, index = task
        rng = np.random.default_rng([self.seed, n_features, index])
        plus = rng.permutation(self.count) < self.count // 2
        labels = np.where(plus[self.owner], 1.0, -1.0)
        projected = rng.standard_normal((n_features, self.points.shape[0])) @ self.points
        return self.solve(projected.T, labels)

    def close(self):
        self.bar.close()
        if self.pool is not None:
            self.pool.shutdown()


def _critical_bracket(tester: _SeparabilityTester, n_max: int, confidence: float) -> tuple[float, int, int]:
    """Double, then bisect for the 0.5 crossing, then widen to the nearest significantly-off-half neighbours.

    Returns the interpolated critical ``N_c`` and the nearest ``N_c`` below and above it whose separable
    fraction is significantly below and above one half (the largest tested ``N_c`` if none is).
    """
    # Manifold capacity is at most about 2, so N_c >= P / 2: double from there (cheap small programs first)
    low, high = 0, min(max(1, tester.count // 2), tester.n_features_max)
    while tester.evaluate(high, n_max, stop_early=True) < 0.5:
        if high == tester.n_features_max:
            raise InputError(
                f"fewer than half of the dichotomies are separable even with all {high} dimensions of the "
                f"data: the simulated capacity is below P / {high} = {tester.count / high:.4g} and cannot be "
                "measured (more features or fewer samples per manifold would be needed)"
            )
        low, high = high, min(2 * high, tester.n_features_max)
    while high - low > 1:
        middle = (low + high) // 2
        if tester.evaluate(middle, n_max, stop_early=True) >= 0.5:
            high = middle
        else:
            low = middle
    fractions = [tester.evaluate(n, n_max, stop_early=False) if n > 0 else 0.0 for n in (low, high)]
    n_critical = low + (0.5 - fractions[0]) / (fractions[1] - fractions[0])
    significant_low, significant_high = low, high
    while significant_low > 0 and _interval(*tester.counts(significant_low), confidence)[1] >= 0.5:
        significant_low -= 1
        if significant_low > 0:
            tester.evaluate(significant_low, n_max, stop_early=False)
    while (
        significant_high < tester.n_features_max
        and _interval(*tester.counts(significant_high), confidence)[0] <= 0.5
    ):
        significant_high += 1
        tester.evaluate(significant_high, n_max, stop_early=False)
    return n_critical, significant_low, significant_high


def _clearly_off_half(successes: int, trials: int) -> bool:
    low, high = _interval(successes, trials, EARLY_STOP_CONFIDENCE)
    return high < 0.5 or low > 0.5


def _interval(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Clopper-Pearson interval of a binomial fraction."""
    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return interval.low, interval.high


def _curve_frame(results: dict[int, list[bool]], confidence: float) -> pd.DataFrame:
    rows = []
    for n_features in sorted(results):
        successes, trials = sum(results[n_features]), len(results[n_features])
        low, high = _interval(successes, trials, confidence)
        rows.append((n_features, successes, trials, successes / trials, low, high))
    columns = ["n_features", "n_separable", "n_dichotomies", "fraction", "fraction_low", "fraction_high"]
    return pd.DataFrame(rows, columns=columns)


def _lp_separable(points: np.ndarray, labels: np.ndarray) -> bool:
    """Maximise m subject to y_i (w . x_i + b) >= m, |w_j| <= 1, m <= 1; separable iff m > tolerance."""
    count, dims = points.shape
    signed = labels[:, None] * points
    constraints = np.hstack([-signed, -labels[:, None], np.ones((count, 1))])
    objective = np.zeros(dims + 2)
    objective[-1] = -1.0
    bounds = [(-1.0, 1.0)] * dims + [(None, None), (None, 1.0)]
    for solver in ("highs", "highs-ipm"):
        result = linprog(objective, A_ub=constraints, b_ub=np.zeros(count), bounds=bounds, method=solver)
        if result.status == 0:
            return -result.fun > MARGIN_TOLERANCE
    raise MFTMAError(f"the separability linear program failed: {result.message} (try method='svm')")


def _svm_separable(points: np.ndarray, labels: np.ndarray) -> bool:
    """Hard-margin SVM with bias through cvxpy: separable iff y_i (w . x_i + b) >= 1 is feasible."""
    import cvxpy as cp

    weights, bias = cp.Variable(points.shape[1]), cp.Variable()
    problem = cp.Problem(
        cp.Minimize(cp.sum_squares(weights)), [cp.multiply(labels, points @ weights + bias) >= 1]
    )
    problem.solve(solver=cp.CLARABEL)
    if problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return True
    if problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        return False
    raise MFTMAError(f"the hard-margin SVM ended with status {problem.status} (try method='lp')")
