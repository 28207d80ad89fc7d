"""Randomized networks (docs/method.md §4.2, Adebayo et al. 2018): re-initialise blocks of a trained network.

``cascade_k``
    the last k blocks re-initialised (cascading randomization from the top down, k = 1 .. L);
``independent_<block>``
    that one block re-initialised, all others trained.

Re-initialisation resets the parameters **and** buffers of every module of the block with the module's
own default initialisation (``reset_parameters``: the one used when the network is built; batch norm
gets weight 1, bias 0 and fresh running statistics), drawn from a generator seeded by
``(seed, block index)``. A block therefore gets the same random weights in every variant that
randomizes it, so variants differ only in *which* blocks are random.

For each variant the experiment measures test accuracy and, per analysis layer, the MFTMA geometry and
the held-out linear-probe accuracy of one subset sample (default ``test``), reduced like the activation
cache. A layer's activations depend only on the blocks before it, so layers below every randomized
block are computed once and shared with the trained network.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mftma.progress import progress_bar

from mftma.errors import InputError
from mftma.pipeline.flawed.experiment import check_samples, train_run, write_table
from mftma.cache.features import CacheReduction, layer_features, sample_inputs
from mftma.estimator import DEFAULT_N_REPS, DEFAULT_N_T
from mftma.experiments.evaluation import classification_accuracy
from mftma.experiments.models import LayeredModel
from mftma.pipeline.flawed.features import subset_geometry
from mftma.pipeline.rollback import rolled_back_blocks
from mftma.probes.classification import DEFAULT_FOLDS

TABLE = "randomization"
ACCURACY_TABLE = "randomization_accuracy"


def randomization_variants(block_names) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(variant, mode, randomized blocks)`` of the trained network, every cascade and every single block.

    Examples
    --------
    >>> [name for name, _, _ in randomization_variants(["fc1", "logits"])]
    ['trained', 'cascade_1', 'cascade_2', 'independent_fc1', 'independent_logits']
    """
    names = list(block_names)
    cascades = [(f"cascade_{k}", "cascade", tuple(rolled_back_blocks(names, "last", k)))
                for k in range(1, len(names) + 1)]
    independent = [(f"independent_{name}", "independent", (name,)) for name in names]
    return [("trained", "trained", ()), *cascades, *independent]


def randomize_blocks(model: LayeredModel, blocks, seed: int = 0) -> LayeredModel:
    """A copy of ``model`` whose ``blocks`` are re-initialised (parameters and buffers), seeded per block.

    Parameters
    ----------
    model : LayeredModel
        The network; it is not changed.
    blocks : iterable of str
        Block names to re-initialise.
    seed : int
        Block ``i`` (its position in the model) is drawn from ``SeedSequence([seed, i])``.

    Raises
    ------
    InputError
        An unknown block name, or a block holding parameters that no module knows how to re-initialise.

    Examples
    --------
    >>> from mftma.experiments.models import build_model
    >>> model = build_model("mlp", (8,), 3, seed=0, hidden=[4])
    >>> random = randomize_blocks(model, ["logits"], seed=1)
    >>> torch.equal(random.blocks.fc1[1].weight, model.blocks.fc1[1].weight)
    True
    """
    names = list(model.blocks.keys())
    unknown = [name for name in blocks if name not in names]
    if unknown:
        raise InputError(f"unknown block(s) {unknown}; the model's blocks are {names}")
    randomized = copy.deepcopy(model)
    for name in blocks:
        block_seed = int(np.random.SeedSequence([int(seed), names.index(name)]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(block_seed)
            _reset(randomized.blocks[name], name)
    return randomized


def _reset(block: torch.nn.Module, name: str) -> None:
    for module in block.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        elif any(True for _ in module.parameters(recurse=False)):
            raise InputError(f"block {name!r} holds a {type(module).__name__} without reset_parameters; "
                             "it cannot be re-initialised")


def randomization_experiment(config, out, *, epoch: int | None = None, subset: str = "test", M: int | None = None,
                             P: int | None = None, n_t: int = DEFAULT_N_T, n_reps: int = DEFAULT_N_REPS,
                             seed: int = 0, probe_folds: int | None = DEFAULT_FOLDS,
                             progress: bool = True) -> pd.DataFrame:
    """Train the run of ``config`` into ``OUT/runs/trained`` and measure every randomized variant of it.

    Parameters
    ----------
    config : RunConfig
        The run; its ``cache`` section gives the sample seed, ``M``, ``P``, ``projection_dim`` and ``pool``.
    out : str or Path
        Experiment folder; tables ``randomization.csv`` and ``randomization_accuracy.csv`` go there.
    epoch : int, optional
        Checkpoint to randomize (default: the last).
    subset : str
        Subset sample whose geometry is measured (``unpermuted``, ``permuted``, ``restored`` or ``test``).
    M, P : int, optional
        Override the cache section's examples per class and number of classes.
    n_t, n_reps, seed : int
        Estimator settings; ``seed`` also seeds the re-initialisation and the probes' folds.
    probe_folds : int or None
        Folds of the linear probe (None: no probe).
    progress : bool
        Show progress bars.

    Returns
    -------
    pandas.DataFrame
        Tidy geometry table: ``variant``, ``mode``, ``randomized`` (block names; ``none`` for the trained
        network), ``k`` (how many), ``layer``, ``layer_index``, ``metric``, ``value``. The accuracy table
        has one row per variant with ``acc_test``.
    """
    from mftma.experiments.subsets import sample_subsets

    cache = config.cache
    config = config.replace(cache={"M": cache.M if M is None else M, "P": cache.P if P is None else P})
    check_samples(config, [subset])
    run = train_run(config, out, "trained", progress)
    epoch = run.checkpoint_epochs()[-1] if epoch is None else epoch
    model = run.load_model(epoch)
    dataset, cache = run.dataset(), config.cache
    sample = sample_subsets(run.corruption(), dataset.y_test.numpy(), dataset.num_classes, M=cache.M, P=cache.P,
                            seed=cache.seed, subsets=[subset])[subset]
    inputs = sample_inputs(dataset, sample.split, sample.indices)
    layers, blocks = model.analysis_layers, list(model.blocks.keys())
    reduce = CacheReduction(cache.projection_dim, cache.pool, cache.seed, cache.projection)
    shared, rows, accuracies = {}, [], []
    for variant, mode, randomized in progress_bar(randomization_variants(blocks), desc="variants", enabled=progress):
        network = randomize_blocks(model, randomized, seed)
        names = {"variant": variant, "mode": mode, "randomized": " ".join(randomized) or "none", "k": len(randomized)}
        accuracies.append({**names, "acc_test": classification_accuracy(network, dataset.x_test, dataset.y_test)})
        features = layer_features(network, inputs, layers, reduce)
        for index, layer in enumerate(layers):
            upstream = tuple(block for block in randomized if block in blocks[:index])
            if (layer, upstream) not in shared:
                shared[(layer, upstream)] = subset_geometry(features[layer], sample.labels, len(sample.classes),
                                                            sample.M, n_t=n_t, n_reps=n_reps, seed=seed,
                                                            probe_folds=probe_folds)
            rows += [{**names, "layer": layer, "layer_index": index, "metric": metric, "value": value}
                     for metric, value in shared[(layer, upstream)].items()]
    write_table(pd.DataFrame(accuracies), Path(out) / f"{ACCURACY_TABLE}.csv")
    table = pd.DataFrame(rows)
    write_table(table, Path(out) / f"{TABLE}.csv")
    return table
