"""Speed of the MFTMA estimator end to end (correlation removal included), printed as JSON.

Cases (random Gaussian manifolds, kappa = 0):

* ``readme``: P = 100, N = 5000, M = 50, n_t = 200, the data of the golden README
  (``np.random.seed(0)`` then ``np.random.randn(5000, 50)`` per manifold); the original code took
  49.4 s and gave capacity 0.039635, radius 1.473052, dimension 36.178010 on it;
* ``large``: P = 100, N = 5000, M = 100, n_t = 300.

For every available fast backend (numba; cuda where a GPU is usable) it reports the warm time
(best and median of ``--repeats`` calls in this process, after one call, and the best CPU time of all
threads together, a guide when other jobs share the machine: see the load averages) and the cold time (the first
call in a fresh Python process, importing the estimator and loading or compiling its numba code),
with the per-stage timings and the results. The in-repo cvxpy path solves one QP per t vector, far
too slow at full size, so numba and cvxpy are timed on the same subset of the README data
(``--subset-manifolds`` manifolds, ``--subset-n-t`` t vectors) and their speed-up is reported.

Usage::

    python benchmarks/bench_estimator.py [--repeats 3] [--cases readme large]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

#: Reference (original code) time and results on the README data.
REFERENCE = {"seconds": 49.4, "capacity": 0.039635, "radius": 1.473052, "dimension": 36.178010}
#: (P, N, M, n_t) of each case.
CASES = {"readme": (100, 5000, 50, 200), "large": (100, 5000, 100, 300)}

COLD_SCRIPT = """
import sys, time, json
import numpy as np
np.random.seed(0)
data = [np.random.randn({N}, {M}) for _ in range({P})]
start = time.perf_counter()
from mftma.estimator.analysis import analyze_manifolds
result = analyze_manifolds(data, 0.0, {n_t}, seed=0, backend="{backend}")
print(json.dumps({{"cold_s": time.perf_counter() - start, "timings": result.timings}}))
"""


def case_data(P: int, N: int, M: int) -> list[np.ndarray]:
    """Random manifolds drawn as in the golden README (legacy global seed 0)."""
    np.random.seed(0)
    return [np.random.randn(N, M) for _ in range(P)]


def warm_times(data, n_t: int, backend: str, repeats: int) -> tuple[list[float], list[float], object]:
    """Wall and CPU (all threads) seconds of ``repeats`` calls after a first (discarded) one, and the last result."""
    from mftma.estimator.analysis import analyze_manifolds

    analyze_manifolds(data, 0.0, n_t, seed=0, backend=backend)
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = analyze_manifolds(data, 0.0, n_t, seed=0, backend=backend)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return times, cpu_times, result


def cold_time(P: int, N: int, M: int, n_t: int, backend: str) -> dict:
    """First call in a fresh process (imports and numba loading/compilation included)."""
    script = COLD_SCRIPT.format(P=P, N=N, M=M, n_t=n_t, backend=backend)
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def bench_case(name: str, backend: str, repeats: int) -> dict:
    P, N, M, n_t = CASES[name]
    print(f"{name} / {backend}: P={P} N={N} M={M} n_t={n_t}", file=sys.stderr)
    cold = cold_time(P, N, M, n_t, backend)
    times, cpu_times, result = warm_times(case_data(P, N, M), n_t, backend, repeats)
    entry = {
        "case": name,
        "backend": backend,
        "P": P, "N": N, "M": M, "n_t": n_t,
        "warm_best_s": min(times),
        "warm_median_s": statistics.median(times),
        "warm_cpu_best_s": min(cpu_times),
        "warm_stages_s": result.timings,
        "cold_s": cold["cold_s"],
        "cold_stages_s": cold["timings"],
        "results": result.summary(),
    }
    if name == "readme":
        entry["speedup_vs_original"] = REFERENCE["seconds"] / min(times)
        entry["reference"] = REFERENCE
    return entry


def bench_cvxpy_subset(manifolds: int, n_t: int) -> dict:
    """numba against the in-repo cvxpy path on the same subset of the README data."""
    from mftma.estimator.analysis import analyze_manifolds

    P, N, M, _ = CASES["readme"]
    data = case_data(P, N, M)[:manifolds]
    print(f"subset: numba vs cvxpy, {manifolds} manifolds, n_t={n_t}", file=sys.stderr)
    seconds = {}
    results = {}
    for backend in ("numba", "cvxpy"):
        analyze_manifolds(data, 0.0, n_t, seed=0, backend=backend, n_reps=1)
        start = time.perf_counter()
        results[backend] = analyze_manifolds(data, 0.0, n_t, seed=0, backend=backend)
        seconds[backend] = time.perf_counter() - start
    anchor = {b: results[b].timings["anchor_points"] for b in seconds}
    return {
        "manifolds": manifolds,
        "n_t": n_t,
        "end_to_end_s": seconds,
        "anchor_points_s": anchor,
        "speedup_end_to_end": seconds["cvxpy"] / seconds["numba"],
        "speedup_anchor_points": anchor["cvxpy"] / anchor["numba"],
        "max_relative_difference": float(
            max(
                np.max(np.abs(getattr(results["numba"], q) / getattr(results["cvxpy"], q) - 1))
                for q in ("capacity", "radius", "dimension")
            )
        ),
    }


def available_backends() -> list[str]:
    from numba import cuda

    return ["numba", "cuda"] if cuda.is_available() else ["numba"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="warm calls timed per case and backend (default: 3)")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES, reverse=True),
                        help="cases to run (default: readme large)")
    parser.add_argument("--subset-manifolds", type=int, default=4,
                        help="manifolds of the numba vs cvxpy comparison (default: 4)")
    parser.add_argument("--subset-n-t", type=int, default=50,
                        help="t vectors of the numba vs cvxpy comparison (default: 50)")
    args = parser.parse_args(argv)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    machine["load_average_before"] = os.getloadavg()
    report = {
        "machine": machine,
        "runs": [bench_case(case, backend, args.repeats) for case in args.cases for backend in available_backends()],
        "numba_vs_cvxpy": bench_cvxpy_subset(args.subset_manifolds, args.subset_n_t),
    }
    machine["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
