"""Summed loss gradients of permuted and unpermuted examples near initialization (docs/method.md §4.2).

At a checkpoint, for each group G of training examples (``permuted``: randomized labels; ``unpermuted``:
kept labels) the cross-entropy losses against the **training** labels are summed,
``L_G = sum_{i in G} loss_i``, and the gradient of ``L_G`` is taken with respect to every block's
parameters. Both groups hold the **same number** n of examples: all examples of the smaller group and a
seeded random sample of the larger one (the same sample at every checkpoint). Equal sizes matter: the
norm of a sum of n gradients has a coherent part that grows like n and a noise part that grows like
sqrt(n), so groups of different sizes cannot be compared by dividing by their counts. Reported per
block (and for the whole network, ``all``):

``permuted``, ``unpermuted``
    ``||grad L_G|| / n``: the norm of the summed gradient divided by the common group size, i.e. the
    norm of the group's mean gradient (multiply by ``n`` for the summed norm).
``ratio``
    ``permuted / unpermuted``. Below 1, the permuted examples pull the weights less than the
    unpermuted ones do: their random labels point in directions that largely cancel.

The network is evaluated in eval mode (batch norm with its running statistics), so each example's loss
depends on that example alone and the gradient splits exactly over examples and groups; the checkpoint
is not changed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mftma.progress import progress_bar

from mftma.errors import InputError
from mftma.pipeline.flawed.experiment import train_run, write_table

TABLE = "gradients"
GROUPS = ("permuted", "unpermuted")
#: Name of the whole-network row; its ``layer_index`` is one past the last block's.
ALL_BLOCKS = "all"


def summed_gradient_norms(model, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> dict:
    """Norm of the gradient of the summed loss, per block and for the whole network (``"all"``).

    Parameters
    ----------
    model : LayeredModel
        Evaluated in eval mode; its gradients are cleared afterwards.
    inputs, labels : torch.Tensor
        The group's examples and the labels the loss is taken against.
    batch_size : int
        Examples per forward pass (the sum does not depend on it).

    Returns
    -------
    dict of str to float
        Block name (and ``"all"``) -> ``||d/dtheta sum_i loss_i||``.

    Examples
    --------
    >>> from mftma.experiments.models import build_model
    >>> model = build_model("mlp", (4,), 3, seed=0, hidden=[5])
    >>> sorted(summed_gradient_norms(model, torch.ones(6, 4), torch.zeros(6, dtype=torch.int64)))
    ['all', 'fc1', 'logits']
    """
    model.eval()
    model.zero_grad(set_to_none=True)
    for start in range(0, len(labels), batch_size):
        logits = model(inputs[start:start + batch_size])
        torch.nn.functional.cross_entropy(logits, labels[start:start + batch_size], reduction="sum").backward()
    squares = {}
    for name, block in model.blocks.items():
        squares[name] = sum(float(p.grad.double().square().sum()) for p in block.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)
    norms = {name: float(np.sqrt(value)) for name, value in squares.items()}
    norms[ALL_BLOCKS] = float(np.sqrt(sum(squares.values())))
    return norms


def gradient_table(model, inputs: torch.Tensor, train_labels: torch.Tensor, groups: dict,
                   batch_size: int = 512) -> pd.DataFrame:
    """Per block: the mean-gradient norm of each of two equally large groups and their ratio.

    Parameters
    ----------
    model : LayeredModel
    inputs, train_labels : torch.Tensor
        Training inputs and the labels the network is trained on.
    groups : dict
        ``{"permuted": indices, "unpermuted": indices}``, integer index arrays of equal length n.
    batch_size : int
        Examples per forward pass.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, ``layer_index`` (the block's analysis-layer index; ``all`` one past the last),
        ``n`` (examples per group), ``permuted``, ``unpermuted`` (summed-gradient norm / n), ``ratio``.
    """
    sizes = {len(indices) for indices in groups.values()}
    if set(groups) != set(GROUPS) or len(sizes) != 1 or 0 in sizes:
        raise InputError(f"groups must be non-empty index arrays of one length for {list(GROUPS)}")
    n = sizes.pop()
    norms = {}
    for group, indices in groups.items():
        rows = torch.as_tensor(indices)
        summed = summed_gradient_norms(model, inputs[rows], train_labels[rows], batch_size)
        norms[group] = {name: value / n for name, value in summed.items()}
    names = [*model.blocks.keys(), ALL_BLOCKS]
    return pd.DataFrame({
        "layer": names,
        "layer_index": np.arange(1, len(names) + 1),
        "n": n,
        "permuted": [norms["permuted"][name] for name in names],
        "unpermuted": [norms["unpermuted"][name] for name in names],
        "ratio": [norms["permuted"][name] / norms["unpermuted"][name] for name in names],
    })


def equal_groups(permuted_mask, seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of the permuted and unpermuted examples, the larger group sampled down to the smaller's size.

    Examples
    --------
    >>> groups = equal_groups(np.array([True, False, False, False, True]))
    >>> groups["permuted"].tolist(), len(groups["unpermuted"])
    ([0, 4], 2)
    """
    mask = np.asarray(permuted_mask, dtype=bool)
    members = {"permuted": np.flatnonzero(mask), "unpermuted": np.flatnonzero(~mask)}
    n = min(len(indices) for indices in members.values())
    rng = np.random.default_rng(seed)
    return {group: indices if len(indices) == n else np.sort(rng.choice(indices, size=n, replace=False))
            for group, indices in members.items()}


def gradient_experiment(config, out, *, max_epoch: int | None = None, seed: int = 0, batch_size: int = 512,
                        progress: bool = True) -> pd.DataFrame:
    """Train the run of ``config`` into ``OUT/runs/run`` and tabulate gradient norms at its early checkpoints.

    Parameters
    ----------
    config : RunConfig
        A run with partially permuted labels (``corruption.kind: permute``, 0 < ε < 1); checkpoint the
        early epochs (``training.checkpoints: all`` or a list).
    out : str or Path
        Experiment folder; the table goes to ``OUT/gradients.csv``.
    max_epoch : int, optional
        Last checkpoint epoch to include (default: all checkpoints).
    seed : int
        Seed of the sample that equalizes the group sizes (:func:`equal_groups`).
    batch_size : int
        Examples per forward pass.
    progress : bool
        Show progress bars.

    Returns
    -------
    pandas.DataFrame
        :func:`gradient_table` of every included checkpoint, with an ``epoch`` column first.

    Raises
    ------
    InputError
        The corruption leaves no permuted or no unpermuted examples.
    """
    partial = config.corruption.kind == "permute" and 0.0 < config.corruption.fraction < 1.0
    if not partial:
        raise InputError("the gradient analysis compares permuted with unpermuted examples: it needs "
                         f"corruption.kind 'permute' with 0 < fraction < 1, got {config.corruption.kind!r} "
                         f"with fraction {config.corruption.fraction}")
    run = train_run(config, out, "run", progress)
    dataset, record = run.dataset(), run.corruption()
    train_labels = torch.as_tensor(record.train_labels, dtype=torch.int64)
    groups = equal_groups(record.permuted_mask, seed)
    epochs = [epoch for epoch in run.checkpoint_epochs() if max_epoch is None or epoch <= max_epoch]
    tables = [gradient_table(run.load_model(epoch), dataset.x_train, train_labels, groups, batch_size)
              .assign(epoch=epoch) for epoch in progress_bar(epochs, desc="gradients", enabled=progress)]
    table = pd.concat(tables, ignore_index=True)
    table = table[["epoch", *table.columns.drop("epoch")]]
    write_table(table, Path(out) / f"{TABLE}.csv")
    return table
