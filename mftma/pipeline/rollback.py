"""Layer rollback (docs/method.md §5): put earlier weights into some blocks of the final network.

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
``RUN_DIR/results/rollback.csv`` and ``rollback.h5``.

Optionally, :func:`rollback_geometry` measures the MFTMA capacity, radius and dimension of the
rolled-back networks' layers on the very examples of the activation cache, reduced the same way
(columns :data:`GEOMETRY_COLUMNS`, files ``rollback_geometry.csv`` and ``.h5``).

Both are resumable: a rerun skips finished cells; rows computed from another final checkpoint
(training went on since) are recomputed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mftma.errors import DataFileError, InputError
from mftma.atomic import atomic_write
from mftma.pipeline.results import results_dir
from mftma.run_lock import run_directory_lock

DIRECTIONS = ("last", "first")
ROLLBACK_SUBSETS = ("test", "unpermuted", "permuted", "restored")
ROLLBACK_COLUMNS = ("run", "final_epoch", "direction", "k", "epoch", "subset", "metric", "value")
GEOMETRY_COLUMNS = ("run", "final_epoch", "direction", "k", "epoch", "layer", "layer_index", "subset", "metric",
                    "value")
GEOMETRY_METRICS = ("capacity", "radius", "dimension")
ROLLBACK_CSV = "rollback.csv"
ROLLBACK_H5 = "rollback.h5"
_CELL = ["epoch", "direction", "k"]
_EVAL_BATCH = 2048
_LOG_SPACED_EPOCHS = 2


@dataclass(frozen=True)
class _Table:
    """A tidy table of the rollback grid: its file name, columns and string columns."""

    name: str
    columns: tuple[str, ...]

    @property
    def string_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c in ("run", "direction", "layer", "subset", "metric"))


ACCURACY_TABLE = _Table("rollback", ROLLBACK_COLUMNS)
GEOMETRY_TABLE = _Table("rollback_geometry", GEOMETRY_COLUMNS)


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


class _CachedSamples:
    """The activation cache's example samples and layer reductions, applied to any network of the run."""

    def __init__(self, run, layers):
        from mftma.cache import ActivationCache
        from mftma.cache.projection import BatchReducer, LayerReduction
        from mftma.cache.reader import CACHE_FILE

        with ActivationCache(run.path / CACHE_FILE) as cache:
            settings = cache.metadata["cache_settings"]
            self.layers = list(cache.layers if layers is None else layers)
            unknown = sorted(set(self.layers) - set(cache.layers))
            if unknown:
                raise InputError(f"layer(s) {unknown} are not in the activation cache; cached: {cache.layers}")
            self.samples = {subset: cache.sample(subset) for subset in cache.subsets}
            info = {layer: cache.layer_info(layer) for layer in self.layers}
        self.layer_index = {layer: int(info[layer]["index"]) for layer in self.layers}
        self.reducers = {layer: BatchReducer(LayerReduction.plan(layer, tuple(info[layer]["original_shape"]),
                                                                 settings["projection_dim"], settings["pool"],
                                                                 settings["seed"],
                                                                 settings.get("projection", "gaussian")))
                         for layer in self.layers}
        dataset = run.dataset()
        self.inputs = {"train": torch.as_tensor(np.asarray(dataset.x_train), dtype=torch.float32),
                       "test": torch.as_tensor(np.asarray(dataset.x_test), dtype=torch.float32)}

    @torch.no_grad()
    def features(self, model, subset: str) -> dict[str, np.ndarray]:
        """Reduced (P*M, N) features of every layer for the cached sample of ``subset``."""
        model.eval()
        sample = self.samples[subset]
        x = self.inputs[sample["split"]][torch.as_tensor(sample["indices"])]
        activations = model.activations(x, self.layers)
        return {layer: self.reducers[layer](activations[layer]) for layer in self.layers}

    def geometry(self, model, n_t: int, n_reps: int, seed: int) -> list[dict]:
        """Capacity, radius and dimension rows of every layer and subset of ``model``."""
        from mftma.estimator.analysis import analyze_manifolds

        rows = []
        for subset, sample in self.samples.items():
            for layer, features in self.features(model, subset).items():
                manifolds = [m.T for m in features.reshape(int(sample["P"]), int(sample["M"]), -1)]
                result = analyze_manifolds(manifolds, n_t=n_t, n_reps=n_reps, seed=seed)
                values = (result.capacity_avg, result.radius_avg, result.dimension_avg)
                rows += [dict(layer=layer, layer_index=self.layer_index[layer], subset=subset, metric=metric,
                              value=float(value)) for metric, value in zip(GEOMETRY_METRICS, values)]
        return rows


_GRID_DOC = """
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
        Show a progress bar."""


def rollback(run, *, ks=None, epochs=None, directions=DIRECTIONS, progress: bool = False) -> pd.DataFrame:
    """Measure accuracies after rolling back k blocks of the final network to epoch e.

    Parameters
    ----------{grid}

    Returns
    -------
    pandas.DataFrame
        The whole table (finished cells of earlier calls included), columns :data:`ROLLBACK_COLUMNS`.

    Raises
    ------
    InputError
        An unknown direction or k outside 0..L.
    DataFileError
        An epoch without checkpoint, an unreadable run directory, or another process writes into it (see
        :mod:`mftma.run_lock`).
    """
    run, cells = _cells(run, ks, epochs, directions)
    sets = _EvaluationSets(run)

    def measure(model):
        return [dict(subset=subset, metric="accuracy", value=value)
                for subset, value in sets.accuracies(model).items()]

    return _fill(run, ACCURACY_TABLE, cells, measure, None, progress)


def rollback_geometry(run, *, layers=None, ks=None, epochs=None, directions=DIRECTIONS, n_t: int = 200,
                      n_reps: int = 10, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """MFTMA capacity, radius and dimension of the rolled-back networks' layers.

    The examples and the per-layer reduction (pooling, random projection) are those of the run's
    activation cache (``mftma cache`` first), so k = 0 reproduces the final epoch's cached geometry.

    Parameters
    ----------
    layers : sequence of str, optional
        Cached layers to measure (default: all cached layers).{grid}
    n_t, n_reps, seed : int
        Estimator settings (as in ``mftma analyze``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`GEOMETRY_COLUMNS`, saved to ``RUN_DIR/results/rollback_geometry.csv`` and ``.h5``.
    """
    run, cells = _cells(run, ks, epochs, directions)
    samples = _CachedSamples(run, layers)
    return _fill(run, GEOMETRY_TABLE, cells, lambda model: samples.geometry(model, n_t, n_reps, seed),
                 ("layer", set(samples.layers)), progress)


rollback.__doc__ = rollback.__doc__.format(grid=_GRID_DOC)
rollback_geometry.__doc__ = rollback_geometry.__doc__.format(grid=_GRID_DOC)


def _cells(run, ks, epochs, directions):
    """The run and its checked grid as (epoch, direction, k) cells, defaults filled in, k = 0 included."""
    from mftma.experiments.run import Run

    run = run if isinstance(run, Run) else Run(run)
    if not run.checkpoint_epochs():
        raise DataFileError(f"{run.path} has no checkpoints; train it first")
    blocks = list(run.build_model().blocks.keys())
    ks = sorted({0, *(range(1, len(blocks) + 1) if ks is None else ks)})
    directions = list(dict.fromkeys(directions))
    for direction in directions:
        for k in ks:
            rolled_back_blocks(blocks, direction, k)
    epochs = default_rollback_epochs(run) if epochs is None else sorted(set(epochs))
    missing = sorted(set(epochs) - set(run.checkpoint_epochs()))
    if missing:
        raise DataFileError(f"no checkpoint for epoch(s) {missing}; checkpointed epochs: {run.checkpoint_epochs()}")
    return run, [(e, d, k) for e in epochs for d in directions for k in ks]


def _fill(run, spec: _Table, cells, measure, covers, progress: bool) -> pd.DataFrame:
    """Add ``measure(model)`` rows of every unfinished cell to the table ``spec`` and save it per epoch.

    A cell is finished when the table has rows for it (from the current final checkpoint) and, if
    ``covers = (column, values)`` is given, those rows cover every value of that column.
    """
    with run_directory_lock(run, spec.name.replace("_", " ")):
        return _fill_locked(run, spec, cells, measure, covers, progress)


def _fill_locked(run, spec: _Table, cells, measure, covers, progress: bool) -> pd.DataFrame:
    """:func:`_fill` while holding the run directory's lock (the table is read, extended and saved)."""
    from tqdm.auto import tqdm

    final = run.checkpoint_epochs()[-1]
    table = _load(run.path, spec, missing_ok=True)
    table = table[table["final_epoch"] == final].reset_index(drop=True)
    done = _finished(table, covers)
    todo = [cell for cell in cells if cell not in done]
    if not todo:
        return table
    model = run.build_model()
    blocks, final_state = list(model.blocks.keys()), run.state_dict(final)
    with tqdm(total=len(todo), desc=spec.name.replace("_", " "), unit="cell", disable=not progress) as bar:
        for epoch in sorted({e for e, _, _ in todo}):
            source_state = run.state_dict(epoch)
            computed, rows = [], []
            for _, direction, k in (cell for cell in todo if cell[0] == epoch):
                model.load_state_dict(rolled_back_state(final_state, source_state,
                                                        rolled_back_blocks(blocks, direction, k)))
                rows += [dict(run=run.path.name, final_epoch=final, direction=direction, k=k, epoch=epoch, **row)
                         for row in measure(model)]
                computed.append((epoch, direction, k))
                bar.update()
            stale = pd.MultiIndex.from_frame(table[_CELL]).isin(computed) if len(table) else []
            table = _sorted(pd.concat([table[~np.asarray(stale, dtype=bool)],
                                       pd.DataFrame(rows, columns=spec.columns)], ignore_index=True))
            _save(run.path, spec, table)
    return table


def _finished(table: pd.DataFrame, covers) -> set:
    groups = table.groupby(_CELL)
    if covers is None:
        return {tuple(key) for key in groups.groups}
    column, required = covers
    return {tuple(key) for key, rows in groups if required <= set(rows[column])}


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    keys = ["_direction", "epoch", "k", *(["layer_index"] if "layer_index" in table else []), "_subset"]
    order = table.assign(_direction=table["direction"].map({d: i for i, d in enumerate(DIRECTIONS)}),
                         _subset=table["subset"].map({s: i for i, s in enumerate(ROLLBACK_SUBSETS)}))
    return table.loc[order.sort_values(keys, kind="stable").index].reset_index(drop=True)


def rollback_csv_path(run_dir) -> Path:
    """``RUN_DIR/results/rollback.csv``."""
    return results_dir(run_dir) / ROLLBACK_CSV


def save_rollback(run_dir, table: pd.DataFrame) -> None:
    """Write the rollback table to ``RUN_DIR/results/rollback.h5`` and ``rollback.csv`` atomically."""
    _save(run_dir, ACCURACY_TABLE, table)


def load_rollback(run_dir, missing_ok: bool = False) -> pd.DataFrame:
    """Read the rollback accuracy table of a run (columns :data:`ROLLBACK_COLUMNS`).

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
    return _load(run_dir, ACCURACY_TABLE, missing_ok)


def load_rollback_geometry(run_dir, missing_ok: bool = False) -> pd.DataFrame:
    """Read the rollback geometry table of a run (columns :data:`GEOMETRY_COLUMNS`); see :func:`load_rollback`."""
    return _load(run_dir, GEOMETRY_TABLE, missing_ok)


def _save(run_dir, spec: _Table, table: pd.DataFrame) -> None:
    directory = results_dir(run_dir)
    atomic_write(directory / f"{spec.name}.h5", lambda temporary: _write_h5(temporary, spec, table))
    atomic_write(directory / f"{spec.name}.csv", lambda temporary: table.to_csv(temporary, index=False))


def _write_h5(path, spec: _Table, table: pd.DataFrame) -> None:
    import h5py

    with h5py.File(path, "w") as handle:
        group = handle.create_group(spec.name)
        group.attrs["format"] = f"mftma-{spec.name}"
        group.attrs["columns"] = json.dumps(list(spec.columns))
        for column in spec.columns:
            values = table[column].to_numpy()
            if column in spec.string_columns:
                group.create_dataset(column, data=values.astype(object), dtype=h5py.string_dtype("utf-8"))
            else:
                group.create_dataset(column, data=values)


def _load(run_dir, spec: _Table, missing_ok: bool) -> pd.DataFrame:
    import h5py

    path = results_dir(run_dir) / f"{spec.name}.h5"
    dtypes = {column: object if column in spec.string_columns else np.float64 if column == "value" else np.int64
              for column in spec.columns}
    if not path.exists():
        if missing_ok:
            return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in dtypes.items()})
        raise DataFileError(f"no {spec.name.replace('_', ' ')} table at {path}; run `mftma rollback {run_dir}` first")
    try:
        with h5py.File(path, "r") as handle:
            group = handle[spec.name]
            if group.attrs.get("format") != f"mftma-{spec.name}":
                raise DataFileError(f"{path} is not an mftma {spec.name.replace('_', ' ')} table")
            columns = {column: group[column].asstr()[()] if column in spec.string_columns else group[column][()]
                       for column in spec.columns}
    except DataFileError:
        raise
    except (OSError, KeyError) as error:
        raise DataFileError(f"cannot read {path}: {error}") from error
    return pd.DataFrame(columns).astype(dtypes)
