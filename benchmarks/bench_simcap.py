"""Cost of the simulated capacity next to the mean-field estimate on the same manifolds, printed as JSON.

Cases (synthetic low-rank Gaussian clouds, ``mftma.estimator.synthetic``):

* ``small``: P = 24, N = 200, M = 10, D = 5, R = 1 (the agreement tests' scale);
* ``layer``: P = 10, N = 500, M = 50, D = 20, R = 1.5 (the size of one cached layer of the quickstart run).

For each case it times the mean-field estimate (numba backend, after a warm-up call) and the simulation
with one thread and with ``--jobs`` threads (HiGHS releases the GIL during a solve), and reports the number
of separability tests, the wall and CPU time per test (CPU time is the robust number on a shared machine),
the thread speed-up and both capacities.

Usage::

    python benchmarks/bench_simcap.py [--cases small layer] [--precision 0.05] [--jobs N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

#: (P, N, M, D, R) of each case.
CASES = {"small": (24, 200, 10, 5, 1.0), "layer": (10, 500, 50, 20, 1.5)}


def bench_case(name: str, precision: float, jobs: int) -> dict:
    from mftma.estimator.analysis import analyze_manifolds
    from mftma.estimator.simulated import simulated_capacity
    from mftma.estimator.synthetic import synthetic_manifolds

    P, N, M, D, R = CASES[name]
    manifolds = synthetic_manifolds("gaussian", P, N, M, radius=R, dimension=D, seed=0)
    analyze_manifolds(manifolds, n_t=200, seed=0)  # warm-up: numba compilation or cache load
    start, cpu_start = time.perf_counter(), time.process_time()
    geometry = analyze_manifolds(manifolds, n_t=200, seed=0)
    mean_field_s, mean_field_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    runs, cpu = {}, {}
    for threads in sorted({1, jobs}):
        cpu_start = time.process_time()
        runs[threads] = simulated_capacity(manifolds, precision=precision, seed=0, n_jobs=threads)
        cpu[threads] = time.process_time() - cpu_start
    serial, parallel = runs[1], runs[jobs]
    tests = serial.timings["n_tests"]
    return {
        "case": name,
        "P": P, "N": N, "M": M, "D": D, "R": R,
        "mean_field": {"capacity": geometry.capacity_avg, "seconds": mean_field_s, "cpu_seconds": mean_field_cpu},
        "simulated": {
            "alpha": serial.alpha, "ci": [serial.ci_low, serial.ci_high], "N_c": serial.N_c,
            "n_tests": tests, "seconds_1_thread": serial.timings["total"],
            f"seconds_{jobs}_threads": parallel.timings["total"],
            "cpu_seconds_1_thread": cpu[1],
            "ms_per_test_1_thread": 1000 * serial.timings["total"] / tests,
            "cpu_ms_per_test": 1000 * cpu[1] / tests,
            "thread_speedup": serial.timings["total"] / parallel.timings["total"],
            "same_result_across_threads": serial.alpha == parallel.alpha,
        },
        "simulated_over_mean_field_time": serial.timings["total"] / mean_field_s,
        "simulated_over_mean_field_cpu": cpu[1] / mean_field_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES), help="cases to run")
    parser.add_argument("--precision", type=float, default=0.05,
                        help="separable-fraction precision of the simulation (default: 0.05, 385 dichotomies)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads of the parallel run (default: all cores)")
    args = parser.parse_args()
    results = [bench_case(name, args.precision, args.jobs) for name in args.cases]
    machine = {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
               "load_average": os.getloadavg()}
    print(json.dumps({"machine": machine, "precision": args.precision, "cases": results}, indent=2))


if __name__ == "__main__":
    main()
