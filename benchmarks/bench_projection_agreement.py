"""MFTMA geometry of real layers after the sparse sign projection vs dense Gaussian projections; prints JSON.

Trains the ``mnist1d`` config for ``--epochs`` epochs, caches its last checkpoint without projection
(``projection_dim`` above every layer's width), and projects each layer wider than ``2 × --dim`` offline to
``--dim`` features with ``--seeds`` Gaussian matrices and as many sparse sign matrices (cache seeds 0, 1,
...). For each (layer, subset) it reports the mean and sample sd of capacity, radius and dimension under
each projection, the unprojected values, and ``z`` = (sparse mean - Gaussian mean) / Gaussian sd: the
sparse projection agrees with the dense one when |z| stays within the spread of dense seeds (|z| < 2-3).
The estimator's radius has rare outliers (a manifold whose center is nearly removed with the common center
directions; MFTMAWarning), for either projection, so the per-seed values and robust statistics (median,
1.4826 × median absolute deviation, ``z_robust``) are reported as well.

Usage: ``python benchmarks/bench_projection_agreement.py [--epochs 10] [--dim 128] [--seeds 5]``
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

METRICS = ("capacity", "radius", "dimension")


def geometry(features: np.ndarray, P: int, M: int, n_t: int) -> dict:
    from mftma.estimator.analysis import analyze_manifolds

    manifolds = features.reshape(P, M, -1).transpose(0, 2, 1)
    result = analyze_manifolds(list(manifolds), n_t=n_t, n_reps=1, seed=0)
    return dict(zip(METRICS, (result.capacity_avg, result.radius_avg, result.dimension_avg)))


def compare(layer: str, features: np.ndarray, P: int, M: int, dim: int, seeds: int, n_t: int) -> dict:
    from mftma.cache.projection import LayerReduction

    values = {}
    for kind in ("gaussian", "sparse"):
        rows = []
        for seed in range(seeds):
            projection = LayerReduction.plan(layer, (features.shape[1],), dim, seed=seed, kind=kind).projection()
            rows.append(geometry(projection(features), P, M, n_t))
        values[kind] = {metric: np.array([row[metric] for row in rows]) for metric in METRICS}
    summary = {kind: {metric: _stats(v) for metric, v in stats.items()} for kind, stats in values.items()}
    summary["unprojected"] = geometry(features, P, M, n_t)
    summary["z"] = {metric: (summary["sparse"][metric]["mean"] - summary["gaussian"][metric]["mean"])
                    / summary["gaussian"][metric]["sd"] for metric in METRICS}
    summary["z_robust"] = {metric: (summary["sparse"][metric]["median"] - summary["gaussian"][metric]["median"])
                           / summary["gaussian"][metric]["robust_sd"] for metric in METRICS}
    return summary


def _stats(values: np.ndarray) -> dict:
    median = float(np.median(values))
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)), "median": median,
            "robust_sd": float(1.4826 * np.median(np.abs(values - median))), "values": values.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the mnist1d config")
    parser.add_argument("--dim", type=int, default=128, help="projection dimension")
    parser.add_argument("--seeds", type=int, default=5, help="projection seeds per kind")
    parser.add_argument("--subsets", nargs="+", default=["unpermuted", "permuted"])
    parser.add_argument("--n-t", type=int, default=200)
    args = parser.parse_args()

    from mftma.cache import ActivationCache, cache_activations
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    config = load_config("mnist1d").replace(training={"epochs": args.epochs})
    report = {"config": "mnist1d", "epochs": args.epochs, "projection_dim": args.dim, "seeds": args.seeds,
              "n_t": args.n_t, "layers": {}}
    with tempfile.TemporaryDirectory() as folder:
        run = train(config, Path(folder) / "run", progress=False)
        epoch = run.checkpoint_epochs()[-1]
        cache_activations(run, epochs=[epoch], subsets=args.subsets, projection_dim=10**9, progress=False)
        with ActivationCache(run.path) as cache:
            for layer in cache.layers:
                for subset in args.subsets:
                    features, _ = cache.features(epoch, layer, subset)
                    if features.shape[1] < 2 * args.dim:
                        continue
                    P, M = len(cache.sample(subset)["classes"]), config.cache.M
                    key = f"{layer}/{subset}"
                    report["layers"][key] = {"features": int(features.shape[1]), "epoch": epoch,
                                             **compare(layer, features, P, M, args.dim, args.seeds, args.n_t)}
    for key in ("z", "z_robust"):
        report[f"max_abs_{key}"] = {metric: max(abs(entry[key][metric]) for entry in report["layers"].values())
                                    for metric in METRICS}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
