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

Every row carries ``source``, a hash of the weights hashes of the two checkpoints it was computed
from (final and rollback epoch; for geometry also the estimator's seeded-results revision and the
cache settings that fix the examples and the reduction). Both tables are resumable: a rerun skips
finished cells; rows whose ``source`` is not the current one (training went on, a checkpoint was
replaced) are dropped and recomputed when asked for. Geometry rows of other estimator settings
(``kappa``, ``n_t``, ``n_reps``, ``seed`` columns) are kept side by side.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from mftma.cache.features import CachedSamples
from mftma.errors import DataFileError, InputError
from mftma.estimator import DEFAULT_KAPPA, DEFAULT_N_REPS, DEFAULT_N_T
from mftma.estimator.validation import manifolds_from_rows
from mftma.experiments.evaluation import classification_accuracy, evaluation_sets
from mftma.results.rollback import (  # noqa: F401 (the table's names, public here before mftma.results)
    ACCURACY_TABLE,
    CELL_COLUMNS,
    DIRECTIONS,
    GEOMETRY_COLUMNS,
    GEOMETRY_TABLE,
    ROLLBACK_COLUMNS,
    ROLLBACK_CSV,
    ROLLBACK_SUBSETS,
    RollbackTable,
    load_rollback,
    load_rollback_geometry,
    load_table,
    rollback_csv_path,
    save_rollback,
    save_table,
    sort_rollback,
)
from mftma.run_lock import run_directory_lock

#: The geometry measured per rolled-back layer and subset (:meth:`GeometryResult.summary` keys).
ROLLBACK_GEOMETRY_METRICS = ("capacity", "radius", "dimension")
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
    """Inputs and labels of the rollback subsets (:func:`~mftma.experiments.evaluation.evaluation_sets`)."""

    def __init__(self, run):
        sets = evaluation_sets(run.dataset(), run.corruption())
        self.sets = {subset: sets[subset] for subset in ROLLBACK_SUBSETS}

    def accuracies(self, model) -> dict[str, float]:
        """Accuracy of ``model`` (eval mode) on each subset; NaN for an empty subset."""
        return {subset: classification_accuracy(model, x, labels) for subset, (x, labels) in self.sets.items()}


def _geometry(samples: CachedSamples, model, kappa: float, n_t: int, n_reps: int, seed: int) -> list[dict]:
    """Capacity, radius and dimension rows of every layer and subset of ``model``."""
    from mftma.estimator.analysis import analyze_manifolds

    rows = []
    for subset, sample in samples.samples.items():
        for layer, features in samples.features(model, subset).items():
            manifolds = manifolds_from_rows(features, int(sample["P"]), int(sample["M"]))
            summary = analyze_manifolds(manifolds, kappa=kappa, n_t=n_t, n_reps=n_reps, seed=seed).summary()
            rows += [dict(layer=layer, layer_index=samples.layer_index[layer], subset=subset, metric=metric,
                          value=float(summary[metric])) for metric in ROLLBACK_GEOMETRY_METRICS]
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
        The rows of the requested cells (reused or computed), columns :data:`ROLLBACK_COLUMNS`; the
        saved table (:func:`load_rollback`) holds every current cell of all calls.

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

    return _fill(run, ACCURACY_TABLE, cells, measure, None, {}, "", progress)


def rollback_geometry(run, *, layers=None, ks=None, epochs=None, directions=DIRECTIONS,
                      kappa: float = DEFAULT_KAPPA, n_t: int = DEFAULT_N_T, n_reps: int = DEFAULT_N_REPS, seed: int = 0,
                      progress: bool = False) -> pd.DataFrame:
    """MFTMA capacity, radius and dimension of the rolled-back networks' layers.

    The examples and the per-layer reduction (pooling, random projection) are those of the run's
    activation cache (``mftma cache`` first), so k = 0 reproduces the final epoch's cached geometry.

    Parameters
    ----------
    layers : sequence of str, optional
        Cached layers to measure (default: all cached layers).{grid}
    kappa : float
        MFTMA margin.
    n_t, n_reps, seed : int
        Estimator settings (as in ``mftma analyze``).

    Returns
    -------
    pandas.DataFrame
        The rows of the requested cells, layers and settings, columns :data:`GEOMETRY_COLUMNS`; the whole
        table (all settings side by side) is saved to ``RUN_DIR/results/rollback_geometry.csv`` and ``.h5``.
    """
    from mftma.estimator import SEEDED_RESULTS_REVISION

    run, cells = _cells(run, ks, epochs, directions)
    samples = CachedSamples(run, layers)
    settings = {"kappa": float(kappa), "n_t": int(n_t), "n_reps": int(n_reps), "seed": int(seed)}
    basis = json.dumps({"revision": SEEDED_RESULTS_REVISION, "cache": samples.cache_settings}, sort_keys=True)
    return _fill(run, GEOMETRY_TABLE, cells, lambda model: _geometry(samples, model, kappa, n_t, n_reps, seed),
                 ("layer", set(samples.layers)), settings, basis, progress)


def best_partial_gain(table, direction: str, n_blocks: int | None = None) -> dict | None:
    """Largest test-accuracy gain over the final network from rolling back 1 <= k < L blocks.

    Parameters
    ----------
    table : pandas.DataFrame
        A rollback table (:func:`rollback`) holding ``direction``.
    direction : str
        ``"last"`` or ``"first"``.
    n_blocks : int, optional
        L, the network's number of blocks (default: the largest k of the table, the full grid's).

    Returns
    -------
    dict or None
        ``gain``, ``k``, ``epoch``, ``test_accuracy`` and ``test_accuracy_final``; None when the
        network has one block (no partial rollback).
    """
    test = table[(table["subset"] == "test") & (table["direction"] == direction)]
    final = float(test.loc[test["k"] == 0, "value"].iloc[0])
    n_blocks = int(table["k"].max()) if n_blocks is None else n_blocks
    partial = test[test["k"].between(1, n_blocks - 1)]
    if partial.empty:
        return None
    best = partial.loc[partial["value"].idxmax()]
    return {"gain": round(float(best["value"]) - final, 6), "k": int(best["k"]), "epoch": int(best["epoch"]),
            "test_accuracy": round(float(best["value"]), 6), "test_accuracy_final": round(final, 6)}


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


def _fill(run, spec: RollbackTable, cells, measure, covers, settings: dict, basis: str, progress: bool) -> pd.DataFrame:
    """Add ``measure(model)`` rows of every unfinished cell to the table ``spec``, save it per epoch, and
    return the rows of ``cells`` under ``settings``.

    A cell is finished when the table has rows for it under ``settings`` (column values) from the
    current ``source`` (:func:`_sources`, of the checkpoints and ``basis``) and, if ``covers =
    (column, values)`` is given, those rows cover every value of that column.
    """
    with run_directory_lock(run, spec.name.replace("_", " ")):
        return _fill_locked(run, spec, cells, measure, covers, settings, basis, progress)


def _fill_locked(run, spec: RollbackTable, cells, measure, covers, settings, basis, progress: bool) -> pd.DataFrame:
    """:func:`_fill` while holding the run directory's lock (the table is read, extended and saved)."""
    from mftma.progress import progress_bar

    final = run.checkpoint_epochs()[-1]
    table = load_table(run.path, spec, missing_ok=True)
    sources = _sources(run, set(table["epoch"]) | {e for e, _, _ in cells}, basis)
    table = table[table["source"].to_numpy() == table["epoch"].map(sources).to_numpy()].reset_index(drop=True)
    ours = _matching(table, settings)
    todo = [cell for cell in cells if cell not in _finished(table[ours], covers)]
    if todo:
        model = run.build_model()
        blocks, final_state = list(model.blocks.keys()), run.state_dict(final)
        with progress_bar(total=len(todo), desc=spec.name.replace("_", " "), unit="cell", enabled=progress) as bar:
            for epoch in sorted({e for e, _, _ in todo}):
                source_state = run.state_dict(epoch)
                computed, rows = [], []
                for _, direction, k in (cell for cell in todo if cell[0] == epoch):
                    model.load_state_dict(rolled_back_state(final_state, source_state,
                                                            rolled_back_blocks(blocks, direction, k)))
                    rows += [dict(run=run.path.name, final_epoch=final, direction=direction, k=k, epoch=epoch,
                                  **row, **settings, source=sources[epoch]) for row in measure(model)]
                    computed.append((epoch, direction, k))
                    bar.update()
                replaced = _matching(table, settings) & _in_cells(table, computed)
                table = sort_rollback(pd.concat([table[~replaced], pd.DataFrame(rows, columns=spec.columns)],
                                          ignore_index=True))
                save_table(run.path, spec, table)
    return table[_matching(table, settings) & _in_cells(table, cells)].reset_index(drop=True)


def _sources(run, epochs, basis: str) -> dict:
    """``{epoch: source}`` for checkpointed ``epochs``: a hash of the final and the epoch's weights hashes and ``basis``."""
    final = run.weights_hash(run.checkpoint_epochs()[-1])
    return {int(epoch): hashlib.sha256(f"{final}|{run.weights_hash(int(epoch))}|{basis}".encode()).hexdigest()[:16]
            for epoch in set(epochs) & set(run.checkpoint_epochs())}


def _matching(table: pd.DataFrame, settings: dict) -> np.ndarray:
    """Rows of ``table`` whose settings columns equal ``settings``."""
    mask = np.ones(len(table), dtype=bool)
    for column, value in settings.items():
        mask &= table[column].to_numpy() == value
    return mask


def _in_cells(table: pd.DataFrame, cells) -> np.ndarray:
    if not len(table) or not cells:
        return np.zeros(len(table), dtype=bool)
    return np.asarray(pd.MultiIndex.from_frame(table[CELL_COLUMNS]).isin(list(cells)), dtype=bool)


def _finished(table: pd.DataFrame, covers) -> set:
    groups = table.groupby(CELL_COLUMNS)
    if covers is None:
        return {tuple(key) for key in groups.groups}
    column, required = covers
    return {tuple(key) for key, rows in groups if required <= set(rows[column])}
