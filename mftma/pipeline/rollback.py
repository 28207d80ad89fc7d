"""Layer rollback (SCIENCE.md §5): put earlier weights into some blocks of the final network.

From the final checkpoint, the parameters **and** buffers of the last k blocks (or, as a control,
the first k) are replaced by those of epoch e, and the accuracy of the resulting network is measured
on four sets of examples:

``test``        held-out examples against their true labels;
``unpermuted``  training examples whose label was kept, against it;
``permuted``    training examples whose label was randomized, against the **training** label;
``restored``    the same permuted examples against their true label.

The grid covers every k in 0..L (k = 0 is the final network itself) and a few epochs e. The tidy
table has one row per (direction, k, epoch, subset) with columns :data:`ROLLBACK_COLUMNS`
(``metric`` is ``"accuracy"``, ``value`` in [0, 1]) and is saved, after every epoch e, atomically to
``RUN_DIR/results/rollback.csv`` and ``rollback.h5``. A rerun skips finished cells; rows computed
from another final checkpoint (training went on since) are recomputed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mftma.errors import DataFileError, InputError
from mftma.experiments.checkpoints import atomic_write
from mftma.pipeline.results import results_dir

DIRECTIONS = ("last", "first")
ROLLBACK_SUBSETS = ("test", "unpermuted", "permuted", "restored")
ROLLBACK_COLUMNS = ("run", "final_epoch", "direction", "k", "epoch", "subset", "metric", "value")
ROLLBACK_CSV = "rollback.csv"
ROLLBACK_H5 = "rollback.h5"
_FORMAT = "mftma-rollback"
_STRING_COLUMNS = ("run", "direction", "subset", "metric")
_EVAL_BATCH = 2048
_LOG_SPACED_EPOCHS = 2


def rolled_back_blocks(block_names, direction: str, k: int) -> list[str]:
    """Names of the blocks that a rollback of ``k`` layers from the ``direction`` end replaces.

    Examples
    --------
    >>> rolled_back_blocks(["fc1", "fc2", "logits"], "last", 2)
    ['fc2', 'logits']
    >>> rolled_back_blocks(["fc1", "fc2", "logits"], "first", 1)
    ['fc1']
    """
    names = list(block_names)
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
    if not 0 <= k <= len(names):
        raise InputError(f"k must be in 0..{len(names)} (the number of blocks), got {k}")
    return names[len(names) - k:] if direction == "last" else names[:k]


def rolled_back_state(final_state: dict, source_state: dict, blocks) -> dict:
    """The final state dict with every entry of ``blocks`` (``blocks.<name>.*``) taken from ``source_state``.

    Parameters and buffers (e.g. batch-norm running statistics) are both replaced.
    """
    prefixes = tuple(f"blocks.{name}." for name in blocks)
    if set(final_state) != set(source_state):
        raise DataFileError("the two checkpoints hold different state-dict entries; are they of the same model?")
    return {key: (source_state if key.startswith(prefixes) else final_state)[key] for key in final_state}


def default_rollback_epochs(run) -> list[int]:
    """Epoch 0, the best epoch, and two log-spaced checkpointed epochs, all before the final one."""
    available = run.checkpoint_epochs()
    final = available[-1]
    targets = np.geomspace(1, final, _LOG_SPACED_EPOCHS + 2)[1:-1] if final > 1 else []
    candidates = [e for e in available if 0 < e < final]
    log_spaced = {min(candidates, key=lambda e: abs(np.log(e) - np.log(t))) for t in targets} if candidates else set()
    return sorted({0, run.best_epoch(), *log_spaced} - {final})


class _EvaluationSets:
    """Inputs and labels of the rollback subsets, as tensors."""

    def __init__(self, run):
        dataset, record = run.dataset(), run.corruption()
        x_train = torch.as_tensor(np.asarray(dataset.x_train), dtype=torch.float32)
        train_labels = torch.as_tensor(np.asarray(record.train_labels), dtype=torch.int64)
        true_labels = torch.as_tensor(np.asarray(record.true_labels), dtype=torch.int64)
        permuted = torch.as_tensor(np.asarray(record.permuted_mask), dtype=torch.bool)
        self.sets = {
            "test": (torch.as_tensor(np.asarray(dataset.x_test), dtype=torch.float32),
                     torch.as_tensor(np.asarray(dataset.y_test), dtype=torch.int64)),
            "unpermuted": (x_train[~permuted], train_labels[~permuted]),
            "permuted": (x_train[permuted], train_labels[permuted]),
            "restored": (x_train[permuted], true_labels[permuted]),
        }

    @torch.no_grad()
    def accuracies(self, model) -> dict[str, float]:
        """Accuracy of ``model`` (eval mode) on each subset; NaN for an empty subset."""
        model.eval()
        scores = {}
        for subset, (x, labels) in self.sets.items():
            if len(labels) == 0:
                scores[subset] = float("nan")
                continue
            predictions = torch.cat([model(batch).argmax(dim=1) for batch in x.split(_EVAL_BATCH)])
            scores[subset] = (predictions == labels).double().mean().item()
        return scores


def rollback(run, *, ks=None, epochs=None, directions=DIRECTIONS, progress: bool = False) -> pd.DataFrame:
    """Measure accuracies after rolling back k blocks of the final network to epoch e.

    Parameters
    ----------
    run : Run, str or Path
        A :class:`~mftma.experiments.run.Run` or a run directory written by ``mftma train``.
    ks : sequence of int, optional
        Numbers of blocks to roll back (default every k in 1..L); k = 0, the final network, is
        always added as the reference.
    epochs : sequence of int, optional
        Checkpointed epochs to roll back to (default :func:`default_rollback_epochs`).
    directions : sequence of str
        ``"last"`` (the last k blocks) and/or ``"first"`` (the first k, the control).
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        The whole table (finished cells of earlier calls included), columns :data:`ROLLBACK_COLUMNS`.

    Raises
    ------
    InputError
        An unknown direction or k outside 0..L.
    DataFileError
        An epoch without checkpoint, or an unreadable run directory.
    """
    from tqdm.auto import tqdm

    from mftma.experiments.run import Run

    run = run if isinstance(run, Run) else Run(run)
    if not run.checkpoint_epochs():
        raise DataFileError(f"{run.path} has no checkpoints; train it first")
    final = run.checkpoint_epochs()[-1]
    model = run.build_model()
    blocks = list(model.blocks.keys())
    ks, epochs, directions = _grid(run, blocks, ks, epochs, directions)
    table = _current_rows(load_rollback(run.path, missing_ok=True), final)
    done = set(zip(table["direction"], table["k"], table["epoch"]))
    todo = [(e, d, k) for e in epochs for d in directions for k in ks if (d, k, e) not in done]
    if not todo:
        return table
    sets, final_state = _EvaluationSets(run), run.state_dict(final)
    with tqdm(total=len(todo), desc="rollback", unit="cell", disable=not progress) as bar:
        for epoch in sorted({e for e, _, _ in todo}):
            source_state = run.state_dict(epoch)
            rows = []
            for direction, k in ((d, k) for e, d, k in todo if e == epoch):
                model.load_state_dict(rolled_back_state(final_state, source_state,
                                                        rolled_back_blocks(blocks, direction, k)))
                rows += [dict(run=run.path.name, final_epoch=final, direction=direction, k=k, epoch=epoch,
                              subset=subset, metric="accuracy", value=value)
                         for subset, value in sets.accuracies(model).items()]
                bar.update()
            table = _sorted(pd.concat([table, pd.DataFrame(rows, columns=ROLLBACK_COLUMNS)], ignore_index=True))
            save_rollback(run.path, table)
    return table


def _grid(run, blocks, ks, epochs, directions):
    """Checked (ks with 0, epochs, directions) of the rollback grid, defaults filled in."""
    ks = sorted({0, *(range(1, len(blocks) + 1) if ks is None else ks)})
    directions = list(dict.fromkeys(directions))
    for direction in directions:
        for k in ks:
            rolled_back_blocks(blocks, direction, k)
    epochs = default_rollback_epochs(run) if epochs is None else sorted(set(epochs))
    missing = sorted(set(epochs) - set(run.checkpoint_epochs()))
    if missing:
        raise DataFileError(f"no checkpoint for epoch(s) {missing}; checkpointed epochs: {run.checkpoint_epochs()}")
    return ks, epochs, directions


def _current_rows(table: pd.DataFrame, final_epoch: int) -> pd.DataFrame:
    return table[table["final_epoch"] == final_epoch].reset_index(drop=True)


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate(ROLLBACK_SUBSETS)}
    order = table.assign(_direction=table["direction"].map({d: i for i, d in enumerate(DIRECTIONS)}),
                         _subset=table["subset"].map(rank))
    order = order.sort_values(["_direction", "epoch", "k", "_subset"], kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def rollback_csv_path(run_dir) -> Path:
    """``RUN_DIR/results/rollback.csv``."""
    return results_dir(run_dir) / ROLLBACK_CSV


def save_rollback(run_dir, table: pd.DataFrame) -> None:
    """Write the rollback table to ``RUN_DIR/results/rollback.h5`` and ``rollback.csv`` atomically."""
    directory = results_dir(run_dir)
    atomic_write(directory / ROLLBACK_H5, lambda temporary: _write_h5(temporary, table))
    atomic_write(rollback_csv_path(run_dir), lambda temporary: table.to_csv(temporary, index=False))


def _write_h5(path, table: pd.DataFrame) -> None:
    import h5py

    with h5py.File(path, "w") as handle:
        group = handle.create_group("rollback")
        group.attrs["format"] = _FORMAT
        group.attrs["columns"] = json.dumps(list(ROLLBACK_COLUMNS))
        for column in ROLLBACK_COLUMNS:
            values = table[column].to_numpy()
            if column in _STRING_COLUMNS:
                group.create_dataset(column, data=values.astype(object), dtype=h5py.string_dtype("utf-8"))
            else:
                group.create_dataset(column, data=values)


def load_rollback(run_dir, missing_ok: bool = False) -> pd.DataFrame:
    """Read the rollback table of a run (columns :data:`ROLLBACK_COLUMNS`).

    Parameters
    ----------
    run_dir : str or Path
    missing_ok : bool
        Return an empty table instead of raising when there is none yet.

    Raises
    ------
    DataFileError
        The file is missing (unless ``missing_ok``), corrupt or not an mftma rollback table.
    """
    import h5py

    path = results_dir(run_dir) / ROLLBACK_H5
    if not path.exists():
        if missing_ok:
            return pd.DataFrame({column: pd.Series(dtype=_dtype(column)) for column in ROLLBACK_COLUMNS})
        raise DataFileError(f"no rollback table at {path}; run `mftma rollback {run_dir}` first")
    try:
        with h5py.File(path, "r") as handle:
            group = handle["rollback"]
            if group.attrs.get("format") != _FORMAT:
                raise DataFileError(f"{path} is not an mftma rollback table")
            columns = {column: group[column].asstr()[()] if column in _STRING_COLUMNS else group[column][()]
                       for column in ROLLBACK_COLUMNS}
    except DataFileError:
        raise
    except (OSError, KeyError) as error:
        raise DataFileError(f"cannot read the rollback table {path}: {error}") from error
    return pd.DataFrame(columns).astype({column: _dtype(column) for column in ROLLBACK_COLUMNS})


def _dtype(column: str):
    if column in _STRING_COLUMNS:
        return object
    return np.float64 if column == "value" else np.int64
