"""The paper's setting (``cifar100_vgg16``) on this machine, one checkpoint measured and the grid extrapolated; prints JSON.

Data shaped like CIFAR-100, without a download: generated 3 x 32 x 32 uint8 images of 100 classes (each class
a smooth random colour pattern plus per-image noise), written as CIFAR-100's python files into a temporary
``data_dir``, so the shipped config runs unchanged through the package's own CIFAR reader. The network is
the config's ``vgg16`` at its random initialisation (epoch 0), written with the trainer's own run files; no
training is timed. In one run it measures

* ``forward``: the network's forward pass alone (every analysis layer's activations, batches of
  ``cache.batch_size``, inference mode) over the examples the cache holds: P x M per example selection
  (the config's 5 subsets draw on 3 selections: kept, randomized and test examples; ``permuted``,
  ``restored`` and ``shuffled`` group the same randomized examples, whose features are stored once);
* ``caching``: :func:`mftma.cache.cache_activations` of that checkpoint (the real writer: forward pass,
  projection, compression, HDF5 writes) with each projection, and the bytes of the file; the dense
  Gaussian is slow (its matrices of the widest layers are drawn again for every batch), so by default it
  caches only ``--gaussian-classes`` classes and its time is scaled to all examples (stated in the output);
* ``cell``: one analysis cell at full P (the pipeline's :func:`~mftma.pipeline.analyze.analyze_cell` on a
  projected layer of the sparse cache, one thread as in an analysis worker): MFTMA geometry and the probe,
  with the scikit-learn probe and the torch probe;
* ``grid``: the config's full grid extrapolated: layers x checkpoints (its log schedule) x subsets cells,
  caching per checkpoint x checkpoints, bytes per checkpoint x checkpoints (the input layer is stored once);
* ``targets``: caching one checkpoint <= 2x its forward pass, one cell <= 1 s including the probe, the full
  config's cache <= 60 GB, and the GPU target (the full grid in <= 10 minutes), not measured without a GPU.

Time it with ``flock /tmp/mftma-timing.lock`` when other jobs may measure at the same time.

Usage::

    flock /tmp/mftma-timing.lock python benchmarks/bench_paper_scale.py [--classes 100 --M 50]
        [--layers all] [--gaussian-classes 10] [--cell-layer conv3]
    python benchmarks/bench_paper_scale.py --quick     # smoke run: 10 classes, M = 5, 4 layers, ~20 s of CPU
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIG = "cifar100_vgg16"
CLASSES = 100
CACHING_OVER_FORWARD_TARGET = 2.0
CELL_TARGET_S = 1.0
CACHE_BYTES_TARGET = 60e9
GPU_GRID_TARGET_S = 600.0
QUICK = {"classes": 10, "M": 5, "layers": ["input", "conv1", "conv2", "fc2"], "gaussian_classes": 10,
         "projection_dim": 256, "cell_layer": "conv1", "subsets": ["unpermuted", "test"], "train_per_class": 10,
         "test_per_class": 10}


def write_cifar100_like(folder: Path, classes: int, train_per_class: int, test_per_class: int,
                        seed: int = 0) -> Path:
    """Write generated images in CIFAR-100's python format (``train``, ``test``, ``meta``) under ``folder``.

    Labels use the first ``classes`` of CIFAR-100's 100 classes. Each class is a smooth random colour
    pattern (a 4 x 4 grid per channel, upsampled); each image is its class's pattern plus noise. Written with
    pickle protocol 2 like the original files (numpy arrays and lists only), read back by the package's
    restricted unpickler.
    """
    rng = np.random.default_rng(seed)
    patterns = np.kron(rng.uniform(40, 215, size=(classes, 3, 4, 4)), np.ones((8, 8)))

    def split(per_class: int) -> dict:
        labels = rng.permutation(np.repeat(np.arange(classes), per_class))
        images = patterns[labels] + rng.normal(0, 40, size=(len(labels), 3, 32, 32))
        return {"data": np.clip(images, 0, 255).astype(np.uint8).reshape(len(labels), 3072),
                "fine_labels": labels.tolist()}

    target = folder / "cifar-100-python"
    target.mkdir(parents=True)
    files = {"train": split(train_per_class), "test": split(test_per_class),
             "meta": {"fine_label_names": [f"class_{index}" for index in range(CLASSES)]}}
    for name, content in files.items():
        with open(target / name, "wb") as handle:
            pickle.dump(content, handle, protocol=2)
    return folder


def untrained_run(config, run_dir: Path):
    """A run directory holding only the network's initialisation (epoch 0), written like ``mftma train`` does."""
    from mftma.devices import resolve_device
    from mftma.experiments import checkpoints
    from mftma.experiments.models import build_model
    from mftma.experiments.run import Run, load_training_data
    from mftma.experiments.training import _write_run_files

    dataset, record = load_training_data(config)
    model = build_model(config.model.name, dataset.input_shape, dataset.num_classes, width=config.model.width,
                        seed=config.training.seed, **config.model.options)
    run_dir.mkdir(parents=True)
    _write_run_files(run_dir, config, dataset, record, model, resolve_device("cpu"), None)
    checkpoints.atomic_torch_save({"epoch": 0, "model": model.state_dict()}, checkpoints.checkpoint_path(run_dir, 0))
    return Run(run_dir)


def forward_pass(run, settings) -> dict:
    """Seconds of the forward pass alone over every cached example, as the cache writer batches it."""
    import torch

    from mftma.cache.writer import _draw_samples

    dataset, model = run.dataset(), run.load_model(0)
    samples = {sample.selection: sample for sample in _draw_samples(run, settings).values()}  # stored once each
    start = time.perf_counter()
    for sample in samples.values():
        inputs = dataset.x_train if sample.split == "train" else dataset.x_test
        for first in range(0, len(sample.indices), settings.batch_size):
            rows = torch.as_tensor(sample.indices[first:first + settings.batch_size])
            with torch.inference_mode():
                model.activations(inputs[rows], settings.layers)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "examples": sum(len(sample.indices) for sample in samples.values())}


def cache_once(run, kind: str, settings, P: int) -> dict:
    """Cache epoch 0 with projection ``kind`` for ``P`` classes (fresh file); seconds, examples and bytes."""
    from mftma.cache import cache_activations

    (run.path / "activations.h5").unlink(missing_ok=True)
    start = time.perf_counter()
    path = cache_activations(run, epochs=[0], layers=settings.layers, subsets=settings.subsets, P=P,
                             projection=kind, projection_dim=settings.projection_dim, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    sizes = entry_bytes(path)
    return {"seconds": seconds, "examples": _selections(settings.subsets) * P * settings.M,
            "file_bytes": path.stat().st_size,
            "input_layer_bytes": sizes.get("input", 0), "bytes_per_layer": sizes}


def entry_bytes(path: Path) -> dict:
    """Stored (compressed) bytes of each layer's entries in the cache file."""
    import h5py

    sizes: dict[str, int] = {}
    with h5py.File(path, "r") as h5:
        for epoch in (name for name in h5 if name.startswith("epoch_")):
            for layer, group in h5[epoch].items():
                sizes[layer] = sizes.get(layer, 0) + sum(group[s].id.get_storage_size() for s in group)
    return sizes


def analysis_cell(run, layer: str, subset: str) -> dict:
    """One cell (epoch 0, ``layer``, ``subset``) analysed with each probe backend, in the pipeline's task."""
    from threadpoolctl import threadpool_limits

    from mftma.cache.reader import ActivationCache
    from mftma.estimator import DEFAULT_KAPPA, DEFAULT_N_REPS, DEFAULT_N_T
    from mftma.estimator.analysis import analyze_manifolds
    from mftma.pipeline.analyze import _probe_settings, analysis_settings, analyze_cell, select_cells
    from mftma.probes import probe_accuracy
    from mftma.probes.classification import DEFAULT_C, DEFAULT_FOLDS

    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1):  # warm-up: numba compilation or cache load, one-time imports
        analyze_manifolds(rng.standard_normal((4, 20, 10)), n_t=20, seed=0)
        for backend in ("sklearn", "torch"):
            probe_accuracy(rng.standard_normal((100, 20)), np.arange(100) % 2, backend=backend, device="cpu")
    path = run.path / "activations.h5"
    with ActivationCache(path) as cache:
        cell = next(c for c in select_cells(cache) if c.layer == layer and c.subset == subset)
        settings = {backend: analysis_settings(cache, kappa=DEFAULT_KAPPA, n_t=DEFAULT_N_T, n_reps=DEFAULT_N_REPS,
                                               seed=0, probe=_probe_settings(cache, [cell], DEFAULT_FOLDS,
                                                                             DEFAULT_C, 0, backend))
                    for backend in ("sklearn", "torch")}
        features = int(cache.features(cell.epoch, cell.layer, cell.subset)[0].shape[1])
    report = {"layer": layer, "subset": cell.subset, "features": features}
    for backend, cell_settings in settings.items():
        record = analyze_cell(path, cell, cell_settings)
        if "error" in record:
            raise RuntimeError(f"analysing {cell} failed: {record['error']}")
        report[f"{backend}_probe"] = {**record["seconds"], "probe_accuracy": record["metrics"]["probe_accuracy"]}
        report["center_structure_K"] = record["metrics"]["K"]  # the rank search's cost grows with it
    report["mftma_s"] = report["torch_probe"]["geometry"]
    report["cell_s_sklearn_probe"] = report["mftma_s"] + report["sklearn_probe"]["probe"]
    report["cell_s_torch_probe"] = report["mftma_s"] + report["torch_probe"]["probe"]
    return report


def grid(config, layers: int, caching_s: float, cache_bytes: dict, cell_s: dict, cores: int) -> dict:
    """The config's full grid extrapolated from one checkpoint and one cell."""
    from mftma.experiments.checkpoints import checkpoint_schedule

    training = config.training
    checkpoints = len(checkpoint_schedule(training.checkpoints, training.epochs, training.log_checkpoints))
    cells = layers * checkpoints * len(config.cache.subsets)
    per_checkpoint = cache_bytes["file_bytes_all_examples"] - cache_bytes["input_layer_bytes_all_examples"]
    return {
        "checkpoints": checkpoints, "layers": layers, "subsets": len(config.cache.subsets), "cells": cells,
        "caching_s": checkpoints * caching_s,
        "cache_bytes": cache_bytes["input_layer_bytes_all_examples"] + checkpoints * per_checkpoint,
        "analysis_workers": cores,
        **{f"analysis_s_{name}": cells * seconds / cores for name, seconds in cell_s.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: " + json.dumps(QUICK))
    parser.add_argument("--classes", type=int, default=CLASSES, help="P: classes cached and analysed")
    parser.add_argument("--M", type=int, default=None, help="examples per class (default: the config's)")
    parser.add_argument("--layers", nargs="+", default=["all"], help="analysis layers cached (default: all)")
    parser.add_argument("--subsets", nargs="+", default=None,
                        help="subsets cached (default: the config's); times and bytes are scaled to the config's "
                             "example selections")
    parser.add_argument("--gaussian-classes", type=int, default=10,
                        help="classes cached with the dense Gaussian projection (its time is scaled to --classes)")
    parser.add_argument("--projection-dim", type=int, default=None, help="default: the config's")
    parser.add_argument("--cell-layer", default="conv3", help="layer of the analysed cell")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    print(json.dumps(run_benchmark(args), indent=2))


def run_benchmark(args) -> dict:
    import torch

    from mftma.cache.writer import resolve_settings
    from mftma.experiments.config import load_config
    from mftma.probes.classification import DEFAULT_FOLDS

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        per_class = {"train_per_class": getattr(args, "train_per_class", 500),
                     "test_per_class": getattr(args, "test_per_class", 100)}
        data_dir = write_cifar100_like(folder / "data", args.classes, **per_class)
        config = load_config(CONFIG).replace(data={"data_dir": str(data_dir)},
                                             cache={**({"M": args.M} if args.M else {})})
        run = untrained_run(config, folder / "run")
        run.dataset()  # load once: not part of any timing
        layers = None if args.layers == ["all"] else args.layers
        dim = args.projection_dim or config.cache.projection_dim
        settings = resolve_settings(run, [0], layers, args.subsets, None, args.classes, dim, None)
        forward = forward_pass(run, settings)
        sparse = cache_once(run, "sparse", settings, args.classes)
        cell = analysis_cell(run, args.cell_layer, settings.subsets[0])
        gaussian = cache_once(run, "gaussian", settings, min(args.gaussian_classes, args.classes))
    # Examples forward-passed and stored per checkpoint of the config (each selection once).
    examples = _selections(config.cache.subsets) * args.classes * settings.M
    for measured in (forward, sparse, gaussian):
        measured["seconds_all_examples"] = measured["seconds"] * examples / measured["examples"]
    for caching in (sparse, gaussian):
        caching["over_forward_pass"] = caching["seconds_all_examples"] / forward["seconds_all_examples"]
    scale = examples / sparse["examples"]
    sparse["file_bytes_all_examples"] = sparse["file_bytes"] * scale
    sparse["input_layer_bytes_all_examples"] = sparse["input_layer_bytes"] * scale
    cell_s = {"sklearn_probe": cell["cell_s_sklearn_probe"], "torch_probe": cell["cell_s_torch_probe"]}
    cores = os.cpu_count() or 1
    full = grid(config, len(settings.layers), sparse["seconds_all_examples"], sparse, cell_s, cores)
    full["caching_s_gaussian"] = full["checkpoints"] * gaussian["seconds_all_examples"]
    full["total_s_sparse_torch_probe"] = full["caching_s"] + full["analysis_s_torch_probe"]
    added_s = sparse["seconds_all_examples"] - forward["seconds_all_examples"]
    return {
        "benchmark": "paper_scale", "config": CONFIG, "quick": bool(args.quick),
        "machine": {"python": platform.python_version(), "cores": cores, "torch_threads": torch.get_num_threads(),
                    "load_average_1min": os.getloadavg()[0], "gpu": torch.cuda.is_available()},
        "size": {"P": args.classes, "M": settings.M, "layers": list(settings.layers),
                 "subsets": len(config.cache.subsets), "selections": _selections(config.cache.subsets),
                 "subsets_cached": list(settings.subsets), "projection_dim": dim, "dtype": settings.dtype,
                 "examples_per_checkpoint": examples, "examples_cached": forward["examples"],
                 "gaussian_examples_cached": gaussian["examples"]},
        "forward": forward,
        "caching": {"sparse": sparse, "gaussian": gaussian},
        "cell": cell,
        "grid": full,
        "targets": {
            "caching_one_checkpoint_sparse_over_forward_pass": _target(
                sparse["over_forward_pass"], CACHING_OVER_FORWARD_TARGET,
                f"the projection, compression and HDF5 writes add {added_s:.0f} s to the forward pass's "
                f"{forward['seconds_all_examples']:.0f} s per checkpoint"),
            "one_cell_s_mftma_plus_torch_probe": _target(
                cell["cell_s_torch_probe"], CELL_TARGET_S,
                f"MFTMA {cell['mftma_s']:.2f} s (center structure of rank {cell['center_structure_K']:.0f}) + "
                f"torch probe {cell['torch_probe']['probe']:.2f} s "
                f"({args.classes}-class {DEFAULT_FOLDS}-fold logistic regression on {cell['features']} features, "
                "one CPU thread)"),
            "full_config_cache_bytes_sparse": _target(
                full["cache_bytes"], CACHE_BYTES_TARGET,
                f"{full['cache_bytes'] / full['checkpoints'] / 1e9:.1f} GB per checkpoint x "
                f"{full['checkpoints']} checkpoints in {settings.dtype}"),
            "full_grid_s_on_gpu": {"value": None, "target": GPU_GRID_TARGET_S, "met": None,
                                   "note": "not measured: no GPU in this run"},
        },
    }


def _selections(subsets) -> int:
    """Number of example selections (stored feature sets) the ``subsets`` draw on."""
    from mftma.experiments.subsets import SELECTIONS

    return len({SELECTIONS[subset] for subset in subsets})


def _target(value: float, target: float, why_missed: str) -> dict:
    """``value``, ``target`` and ``met``; when missed, also by what factor and why (``why_missed``)."""
    met = bool(value <= target)
    return {"value": value, "target": target, "met": met,
            **({} if met else {"missed_by_factor": value / target, "why": why_missed})}


if __name__ == "__main__":
    main()
