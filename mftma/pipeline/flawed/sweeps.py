"""Experiments that train several variants of one run config and compare them (issue 6, points 1, 3, 5).

:func:`concept_experiment`
    Concept regression probes (Graziani et al. 2019) of a generalizing network (true labels), a
    memorizing one (every label random) and untrained networks, per layer, on test images with concept
    values (the ``textures`` data set, or CIFAR with ``concepts: true``).
:func:`corruption_experiment`
    The same network trained on true labels, ε-permuted labels, random labels, shuffled pixels, random
    pixels and Gaussian inputs (Zhang et al. 2017): training curves, and per-layer geometry and probes
    through the activation cache and ``mftma analyze``.
:func:`size_sweep`
    Width-scaled networks trained with label noise: best- and final-epoch test accuracy against the
    parameter count (double descent), with the geometry of the final layer.

Every run lives in ``OUT/runs/<name>`` and is trained, cached and analysed by the standard pieces, so
an interrupted experiment resumes where it stopped and a rerun recomputes nothing.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from mftma.progress import progress_bar

from mftma.errors import InputError
from mftma.estimator import DEFAULT_N_REPS, DEFAULT_N_T
from mftma.pipeline.flawed.experiment import check_samples, local_scheduler, train_run, write_table
from mftma.probes.concept import DEFAULT_FOLDS, METHODS
from mftma.run_lock import run_directory_lock

#: Corruption kinds of :func:`corruption_experiment`, in the order of Zhang et al.'s Fig. 1.
CORRUPTION_KINDS = ("none", "permute", "random_labels", "shuffle_pixels", "random_pixels", "gaussian")
#: Epoch names accepted besides checkpoint numbers.
EPOCH_NAMES = ("best", "final")


def resolve_epoch(run, epoch) -> int:
    """A checkpoint epoch from an int, ``"best"`` (highest test accuracy) or ``"final"`` (last checkpoint)."""
    if epoch == "best":
        return run.best_epoch()
    if epoch == "final":
        return run.checkpoint_epochs()[-1]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch not in run.checkpoint_epochs():
        raise InputError(f"epoch must be one of {list(EPOCH_NAMES)} or a checkpointed epoch "
                         f"{run.checkpoint_epochs()}, got {epoch!r}")
    return epoch


def cache_and_analyze_epochs(run, epochs, *, layers=None, subsets=None, n_t=DEFAULT_N_T, n_reps=DEFAULT_N_REPS,
                             seed=0, probes=True, scheduler=None, progress=True) -> pd.DataFrame:
    """Cache and analyse some epochs of a run; the results table with an ``at`` column naming each epoch.

    Parameters
    ----------
    run : Run
    epochs : sequence
        Epochs as accepted by :func:`resolve_epoch`; ``at`` holds them as given (e.g. ``"final"``).
    layers : sequence of str, optional
        Analysis layers (default: the cache config's).
    subsets : sequence of str, optional
        Subsets (default: the cache config's); those without examples under the run's corruption (e.g.
        ``permuted`` under true labels) are skipped.
    n_t, n_reps, seed, probes, scheduler
        Passed to :func:`mftma.pipeline.analyze.analyze_run`.
    """
    from mftma.cache.writer import cache_activations
    from mftma.experiments.subsets import available_subsets
    from mftma.pipeline.analyze import analyze_run

    resolved = {str(epoch): resolve_epoch(run, epoch) for epoch in epochs}
    present = available_subsets(run.corruption())
    subsets = [subset for subset in (subsets or run.config.cache.subsets) if subset in present]
    numbers = sorted(set(resolved.values()))
    with run_directory_lock(run, "activation caching and analysis"):
        cache_activations(run, epochs=numbers, layers=layers, subsets=subsets, progress=progress)
        table = analyze_run(run.path, epochs=numbers, layers=layers, subsets=subsets, n_t=n_t, n_reps=n_reps,
                            seed=seed, probes=probes, scheduler=scheduler, progress=progress)
    return pd.concat([table[table["epoch"] == number].assign(at=name) for name, number in resolved.items()],
                     ignore_index=True)


def concept_experiment(config, out, *, n_examples: int | None = None, methods=METHODS, n_splits: int = DEFAULT_FOLDS,
                       untrained_seeds=(1,), seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Concept probes per layer of a generalizing, a memorizing and untrained networks.

    Parameters
    ----------
    config : RunConfig
        The run; its corruption section is replaced by ``none`` (generalizing, ``OUT/runs/generalizing``)
        and ``random_labels`` (memorizing, ``OUT/runs/memorizing``); both keep the other settings.
    out : str or Path
        Experiment folder: ``concepts.csv`` and ``concept_models.csv`` (each network's accuracies).
    n_examples : int, optional
        Probe on the first ``n_examples`` test images (default: all).
    methods : sequence of str
        ``linear`` and/or ``ridge`` (:mod:`mftma.probes.concept`).
    n_splits, seed : int
        Folds of the probes and seed of the folds and of the shuffled baseline.
    untrained_seeds : sequence of int
        Initialisation seeds of the untrained networks (``untrained_<seed>``).
    progress : bool
        Show progress bars.

    Returns
    -------
    pandas.DataFrame
        :func:`~mftma.probes.concept.concept_table` rows with ``model`` and ``layer_index`` columns.

    Raises
    ------
    InputError
        The data set has no concept values for its test images.
    """
    from threadpoolctl import threadpool_limits

    from mftma.cache.features import layer_features
    from mftma.pipeline.flawed.features import channel_means
    from mftma.experiments.models import build_model
    from mftma.probes.concept import concept_table

    runs = {"generalizing": train_run(config.replace(corruption={"kind": "none"}), out, "generalizing", progress)}
    dataset = runs["generalizing"].dataset()
    if dataset.concepts_test is None:
        raise InputError(f"data set {dataset.name!r} has no concept values; use 'textures' (or CIFAR with "
                         "data.options.concepts: true)")
    runs["memorizing"] = train_run(config.replace(corruption={"kind": "random_labels"}), out, "memorizing", progress)
    count = len(dataset.y_test) if n_examples is None else int(n_examples)
    inputs, concepts = dataset.x_test[:count], {name: values[:count] for name, values in dataset.concepts_test.items()}
    model = config.model
    networks = {name: run.load_model(run.checkpoint_epochs()[-1]) for name, run in runs.items()}
    networks.update({f"untrained_{s}": build_model(model.name, dataset.input_shape, dataset.num_classes,
                                                   width=model.width, seed=s, **model.options)
                     for s in untrained_seeds})
    tables = []
    with threadpool_limits(limits=1):
        for name, network in progress_bar(networks.items(), desc="concept probes", enabled=progress):
            layers = network.analysis_layers
            features = layer_features(network, inputs, layers, channel_means)
            table = concept_table(features, concepts, methods=methods, n_splits=n_splits, seed=seed)
            tables.append(table.assign(model=name, layer_index=table["layer"].map(layers.index)))
    table = pd.concat(tables, ignore_index=True)
    write_table(table, Path(out) / "concepts.csv")
    write_table(_final_accuracies(runs), Path(out) / "concept_models.csv")
    return table


def _final_accuracies(runs: dict) -> pd.DataFrame:
    """Per run: the final epoch's accuracy on its training labels and on the test set."""
    rows = []
    for name, run in runs.items():
        last = run.metrics().iloc[-1]
        rows.append({"model": name, "epoch": int(last["epoch"]), "acc_train": last["acc_train"],
                     "acc_test": last["acc_test"]})
    return pd.DataFrame(rows)


def corruption_experiment(config, out, *, kinds=CORRUPTION_KINDS, epochs=("final",), layers=None,
                          n_t: int = DEFAULT_N_T, n_reps: int = DEFAULT_N_REPS, seed: int = 0, probes: bool = True,
                          scheduler: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Train the run of ``config`` under each corruption kind; curves and per-layer geometry side by side.

    Parameters
    ----------
    config : RunConfig
        The run; only ``corruption.kind`` changes (``permute`` keeps the config's fraction ε).
    out : str or Path
        Experiment folder: ``corruption_curves.csv`` (every run's ``metrics.csv`` with a ``kind`` column)
        and ``corruption_geometry.csv`` (results tables with ``kind`` and ``at`` columns).
    kinds : sequence of str
        Corruption kinds (:data:`CORRUPTION_KINDS`); each run is ``OUT/runs/<kind>``.
    epochs : sequence
        Epochs to analyse (``"best"``, ``"final"`` or checkpoint numbers).
    layers : sequence of str, optional
        Layers to analyse (default: the cache config's).
    n_t, n_reps, seed, probes
        Analysis settings (``mftma analyze``).
    scheduler : str, optional
        A running Dask scheduler; default: one local cluster for the whole experiment.
    progress : bool
        Show progress bars.

    Returns
    -------
    pandas.DataFrame
        The geometry table.
    """
    unknown = [kind for kind in kinds if kind not in CORRUPTION_KINDS]
    if unknown:
        raise InputError(f"unknown corruption kind(s) {unknown}; valid: {list(CORRUPTION_KINDS)}")
    variants = {kind: config.replace(corruption={"kind": kind}) for kind in kinds}
    for variant in variants.values():
        check_samples(variant)
    curves, tables = [], []
    with local_scheduler(scheduler) as address:
        for kind, variant in variants.items():
            run = train_run(variant, out, kind, progress)
            curves.append(run.metrics().assign(kind=kind))
            tables.append(cache_and_analyze_epochs(run, epochs, layers=layers, n_t=n_t, n_reps=n_reps, seed=seed,
                                         probes=probes, scheduler=address, progress=progress).assign(kind=kind))
    write_table(pd.concat(curves, ignore_index=True), Path(out) / "corruption_curves.csv")
    table = pd.concat(tables, ignore_index=True)
    write_table(table, Path(out) / "corruption_geometry.csv")
    return table


def size_sweep(config, out, *, widths=(0.25, 0.5, 1.0, 2.0), layer: str | None = None, epochs=("best", "final"),
               subsets=None, n_t: int = DEFAULT_N_T, n_reps: int = DEFAULT_N_REPS, seed: int = 0,
               probes: bool = False, scheduler: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Train the run of ``config`` at several model widths; accuracy and final-layer geometry per width.

    Parameters
    ----------
    config : RunConfig
        The run (with label noise); only ``model.width`` changes. Each run is ``OUT/runs/width_<w>``.
    out : str or Path
        Experiment folder: ``size_accuracy.csv`` (one row per width) and ``size_geometry.csv``.
    widths : sequence of float
        Width multipliers (:func:`~mftma.experiments.models.build_model`).
    layer : str, optional
        The layer whose geometry is measured (default: the last analysis layer).
    epochs : sequence
        Epochs at which it is measured (``"best"``, ``"final"`` or checkpoint numbers).
    subsets : sequence of str, optional
        Subsets to analyse (default: the cache config's that have examples).
    n_t, n_reps, seed, probes, scheduler, progress
        As in :func:`corruption_experiment`.

    Returns
    -------
    pandas.DataFrame
        The accuracy table: ``width``, ``num_parameters``, ``best_epoch``, ``acc_test_best``,
        ``final_epoch``, ``acc_test_final``, ``acc_train_final``, ``acc_permuted_final``.
    """
    check_samples(config, subsets)
    rows, tables = [], []
    with local_scheduler(scheduler) as address:
        for width in progress_bar(widths, desc="widths", enabled=progress):
            run = train_run(config.replace(model={"width": width}), out, f"width_{width:g}", progress)
            rows.append(_size_row(run, width))
            last_layer = layer or run.metadata["model"]["layers"][-1]
            table = cache_and_analyze_epochs(run, epochs, layers=[last_layer], subsets=subsets, n_t=n_t, n_reps=n_reps,
                                   seed=seed, probes=probes, scheduler=address, progress=progress)
            tables.append(table.assign(width=width, num_parameters=rows[-1]["num_parameters"]))
    write_table(pd.concat(tables, ignore_index=True), Path(out) / "size_geometry.csv")
    accuracy = pd.DataFrame(rows)
    write_table(accuracy, Path(out) / "size_accuracy.csv")
    return accuracy


def _size_row(run, width: float) -> dict:
    metrics = run.metrics().set_index("epoch")
    best, final = run.best_epoch(), int(metrics.index.max())
    return {"width": width, "num_parameters": int(run.metadata["model"]["num_parameters"]), "best_epoch": best,
            "acc_test_best": metrics.loc[best, "acc_test"], "final_epoch": final,
            "acc_test_final": metrics.loc[final, "acc_test"], "acc_train_final": metrics.loc[final, "acc_train"],
            "acc_permuted_final": metrics.loc[final, "acc_permuted"]}
