"""Benchmark of the activation cache; prints JSON.

1. **Time**: trains the default run (``mnist1d`` config) for a few epochs and caches every checkpoint with
   the default cache settings (all layers, 4 subsets, M = 50, all 10 classes). Separates per-epoch and
   per-checkpoint times from one-time costs (data generation, sampling) and extrapolates both to the full
   60-epoch run with its configured checkpoints (21 log-spaced): caching time as a fraction of training
   time, target <= 0.20; also the fraction if every epoch were checkpointed and cached.
2. **Memory**: for 1-D CNNs whose first block (conv + batch norm + ReLU + max pool) outputs ``--sizes``
   features (>= 10^6; its weights stay small), caches that layer for 100 examples in batches of 32 in a
   fresh process (streamed projection, matrix blocks regenerated per batch) and reports the peak resident
   memory (VmHWM) above the process's baseline (run, data and model loaded) next to one batch of that
   layer's activations. Target: independent of the layer size beyond one batch, i.e. peak increase / one
   batch roughly constant (the forward pass holds a few batch-sized intermediates: convolution, batch norm
   and ReLU outputs before pooling). ``tests/test_projection.py`` checks the projection's own allocations.

3. **Projection speed**: one batch of 256 examples of a VGG-16 first-block layer on CIFAR (64 x 32 x 32 =
   65536 features) projected to 5000 features with the matrix drawn block by block (it is 1.3 GB, above
   the default budget for keeping it), with the projection's threads against one thread in the same run;
   the outputs must be bitwise equal.
4. **Projection kinds**: the same layer and batch projected by the dense Gaussian (matrix regenerated per
   batch, as in caching) and by the sparse sign projection (matrix drawn once per layer, its drawing timed
   separately), in the same run, next to that block's own forward pass (conv 3 -> 64, batch norm, ReLU on
   256 images of 3 x 32 x 32) and a plain pass over the batch (its sum) for scale.

Time it with ``flock /tmp/mftma-timing.lock`` when other jobs may measure at the same time.

Usage: ``python benchmarks/bench_cache.py [--epochs 3] [--sizes 250000 1000000 2000000]
[--parts time memory projection_threads projection_kinds]``
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEMORY_PROBE = """
import json, sys, time
from mftma.cache import cache_activations
from mftma.experiments.run import Run

def status_mb(key):  # VmHWM, unlike ru_maxrss, is not inherited from the forking parent
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key)) / 1024

run = Run(sys.argv[1])
run.load_model(1), run.dataset(), run.corruption(), run.weights_hash(1)
baseline = status_mb("VmRSS")
start = time.perf_counter()
cache_activations(run, epochs=[1], layers=["conv1"], subsets=["test"], projection_dim=int(sys.argv[2]),
                  progress=False, cache_bytes=0)
seconds = time.perf_counter() - start
peak = status_mb("VmHWM")
print(json.dumps({"caching_s": seconds, "baseline_rss_mb": baseline, "peak_rss_mb": peak}))
"""


def time_default_run(epochs: int, root: Path) -> dict:
    from mftma.cache import cache_activations
    from mftma.experiments.checkpoints import checkpoint_schedule
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    config = load_config("mnist1d").replace(training={"epochs": epochs})
    full = load_config("mnist1d").training
    full_epochs = full.epochs
    full_checkpoints = len(checkpoint_schedule(full.checkpoints, full.epochs, full.log_checkpoints))
    start = time.perf_counter()
    run = train(config, root / "default", progress=False)
    training = time.perf_counter() - start
    epoch_seconds = run.metrics()["seconds"].to_numpy()  # per epoch; epoch 0 is the evaluation at init
    train_epoch, train_fixed = epoch_seconds[1:].mean(), training - epoch_seconds.sum()
    start = time.perf_counter()
    cache_activations(run, epochs=[0], progress=False)  # includes one-time costs: data, samples, file
    first = time.perf_counter() - start
    start = time.perf_counter()
    cache_activations(run, progress=False)
    checkpoint = (time.perf_counter() - start) / (len(run.checkpoint_epochs()) - 1)
    cache_fixed = first - checkpoint
    full_training = train_fixed + epoch_seconds[0] + full_epochs * train_epoch
    full_caching = cache_fixed + full_checkpoints * checkpoint
    every_epoch_caching = cache_fixed + (full_epochs + 1) * checkpoint
    return {
        "config": "mnist1d", "torch_threads": torch_threads(), "epochs_trained": epochs,
        "training_s_per_epoch": train_epoch, "training_fixed_s": train_fixed,
        "caching_s_per_checkpoint": checkpoint, "caching_fixed_s": cache_fixed,
        "caching_fraction_per_epoch": checkpoint / train_epoch,
        "full_run_epochs": full_epochs, "full_run_training_s": full_training, "full_run_caching_s": full_caching,
        "full_run_checkpoints": full_checkpoints,
        "caching_fraction_of_training": full_caching / full_training, "target": 0.20,
        "caching_fraction_if_every_epoch_is_checkpointed": every_epoch_caching / full_training,
    }


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def memory_of_layer(features: int, projection_dim: int, root: Path) -> dict:
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    config = load_config("tiny").replace(
        data={"options": {"n_train": 400, "n_test": 400}}, training={"epochs": 1},
        model={"name": "cnn1d", "options": {"channels": [features // 20], "hidden": 4}},
        cache={"M": 10, "batch_size": 32},
    )
    run = train(config, root / f"wide_{features}", progress=False)
    features = run.build_model().activations(run.dataset().x_test[:1], ["conv1"])["conv1"][0].numel()
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(run.path), str(projection_dim)],
                           capture_output=True, text=True)
    if probe.returncode:
        raise RuntimeError(f"memory probe for {features} features failed:\n{probe.stderr}")
    result = json.loads(probe.stdout)
    batch_mb = config.cache.batch_size * features * 4 / 2**20
    increase = result["peak_rss_mb"] - result["baseline_rss_mb"]
    return {
        "features": features, "projection_dim": projection_dim, "batch_size": config.cache.batch_size,
        "examples": 10 * config.cache.M, **result, "peak_increase_mb": increase, "one_batch_mb": batch_mb,
        "peak_increase_per_batch": increase / batch_mb,
        "full_matrix_mb_never_formed": features * projection_dim * 4 / 2**20,
    }


def projection_threads_speedup(features: int = 65536, projection_dim: int = 5000, batch: int = 256) -> dict:
    """Seconds to project one batch with :data:`PROJECTION_THREADS` threads and with one, and their ratio."""
    import numpy as np

    from mftma.cache import projection

    x = np.random.default_rng(0).standard_normal((batch, features), dtype=np.float32)
    timings, outputs = {}, {}
    for threads in (1, projection.PROJECTION_THREADS):
        projection.PROJECTION_THREADS = threads
        matrix = projection.RandomProjection(features, projection_dim, projection.layer_seed(0, "conv1"),
                                             cache_bytes=0)
        start = time.perf_counter()
        outputs[threads] = matrix(x)
        timings[threads] = time.perf_counter() - start
    threads = max(timings)
    return {"features": features, "projection_dim": projection_dim, "batch": batch,
            "seconds_1_thread": timings[1], f"seconds_{threads}_threads": timings[threads],
            "speedup": timings[1] / timings[threads],
            "bitwise_equal": bool(np.array_equal(outputs[1], outputs[threads]))}


def projection_kinds(features: int = 65536, projection_dim: int = 5000, batch: int = 256) -> dict:
    """Seconds per batch of the Gaussian and sparse projections of a VGG-16 first-block layer, same run."""
    import numpy as np
    import torch

    from mftma.cache.projection import SPARSE_NONZEROS, LayerReduction

    x = np.random.default_rng(0).standard_normal((batch, features), dtype=np.float32)
    report = {"features": features, "projection_dim": projection_dim, "batch": batch,
              "sparse_nonzeros_per_feature": SPARSE_NONZEROS}
    for kind in ("gaussian", "sparse"):
        reduction = LayerReduction.plan("conv1", (features,), projection_dim, kind=kind)
        start = time.perf_counter()
        projection = reduction.projection(cache_bytes=0)  # the 1.3 GB Gaussian matrix exceeds the budget
        report[f"{kind}_setup_s"] = time.perf_counter() - start
        start = time.perf_counter()
        projection(x)
        report[f"{kind}_s_per_batch"] = time.perf_counter() - start
    block = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.BatchNorm2d(64),
                                torch.nn.ReLU()).eval()
    images = torch.randn(batch, 3, 32, 32)
    with torch.inference_mode():
        block(images)  # warm-up
        start = time.perf_counter()
        block(images)
        report["first_block_forward_s"] = time.perf_counter() - start
    start = time.perf_counter()
    x.sum()
    report["read_batch_s"] = time.perf_counter() - start
    report["speedup_sparse_vs_gaussian"] = report["gaussian_s_per_batch"] / report["sparse_s_per_batch"]
    report["sparse_vs_forward"] = report["sparse_s_per_batch"] / report["first_block_forward_s"]
    return report


PARTS = ("time", "memory", "projection_threads", "projection_kinds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the shortened default run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000, 2_000_000],
                        help="feature counts of the wide layer for the memory measurement (rounded to 20 "
                             "positions x channels)")
    parser.add_argument("--projection-dim", type=int, default=256,
                        help="projection dimension in the memory measurement (block memory is "
                             "512 x dim x 4 bytes whatever the layer size)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="measurements to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        parts = {"time": lambda: time_default_run(args.epochs, root),
                 "memory": lambda: [memory_of_layer(size, args.projection_dim, root) for size in args.sizes],
                 "projection_threads": projection_threads_speedup, "projection_kinds": projection_kinds}
        report = {part: parts[part]() for part in args.parts}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
