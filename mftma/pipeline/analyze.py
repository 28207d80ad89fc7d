"""Analyse a run: MFTMA geometry, data dimension and probe accuracy of every cached cell.

A *cell* is one (epoch, layer, subset) entry of the activation cache. Each cell is one task: it
opens the cache read-only, computes the MFTMA geometry of the subset's class manifolds (docs/method.md
§2), the total data dimension of its points, and the held-out accuracy of a linear probe with the
subset's labels (§3); the ``test`` cell also scores a probe trained on the unpermuted examples of
the same epoch and layer. Tasks fan out over a Dask distributed cluster: a local one by default
(one single-threaded worker process per core), or an existing one given by its scheduler address.
Workers of an existing cluster must see the run directory at the same path (shared file system).

Incremental: the client writes every finished cell at once, atomically, as a small JSON record
``RUN_DIR/results/cells/<settings key>/e0003-l002-permuted.json``. The settings key is a hash of the
estimator and probe settings (the estimator's seeded-results revision included) and of the cache's
settings; each record also holds the cell's *identity*, a hash of what its cache entry was computed
from (:meth:`~mftma.cache.reader.ActivationCache.entry_identity`: the checkpoint's weights hash, the
examples, the layer's reduction; for ``test`` also the unpermuted entry its transfer probe trains on).
A record is reused only when its settings key and identity both match, so a rerun skips finished
cells, an interrupted analysis resumes where it stopped, and other settings, a rebuilt cache or a
changed checkpoint recompute exactly the affected cells. Every estimator and probe call uses the same
seed, so differences between cells are not blurred by different random draws.

The saved table holds every stored cell of every settings key whose identity matches the current
cache, so analyses with different settings add rows side by side and never drop each other's.

A cell whose cache entry cannot be read (damaged) or holds non-finite values is stored as an *error
record* (retried by the next run, never taken as finished); :func:`analyze_run` saves the table of the
other cells and then raises a :class:`~mftma.errors.DataFileError` naming the failed cells and the
command that repairs them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import pathlib
import threading
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from mftma.atomic import atomic_path
from mftma.errors import DataFileError, InputError, MFTMAWarning
from mftma.estimator import DEFAULT_KAPPA, DEFAULT_N_REPS, DEFAULT_N_T, SEEDED_RESULTS_REVISION
from mftma.results.table import RESULT_COLUMNS, results_dir, save_results, validate_results
from mftma.probes.classification import DEFAULT_C, DEFAULT_FOLDS, DEFAULT_MAX_ITER, TORCH_FIT_REVISION, resolve_backend
from mftma.run_lock import run_directory_lock

CELLS_DIRNAME = "cells"
#: Metric counting the manifolds of a cell for which the estimator issued an MFTMAWarning.
WARNED_METRIC = "warned_manifolds"
#: Held while a cell records its warnings (the warnings module's state is process-wide).
_WARNINGS_LOCK = threading.Lock()
#: Cells named in :func:`warning_summary` before it abbreviates.
MAX_LISTED_CELLS = 8
SETTINGS_FILE = "settings.json"
#: Fraction of variance that defines the explained-variance dimension (docs/method.md §2.9).
EXPLAINED_VARIANCE = 0.9


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (epoch, layer, subset) entry of the activation cache."""

    epoch: int
    layer: str
    layer_index: int
    subset: str

    @property
    def filename(self) -> str:
        """Name of the cell's record file, e.g. ``e0003-l002-permuted.json``."""
        return f"e{self.epoch:04d}-l{self.layer_index:03d}-{self.subset}.json"


def analyze_run(
    run_dir,
    *,
    epochs: Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
    subsets: Sequence[str] | None = None,
    kappa: float = DEFAULT_KAPPA,
    n_t: int = DEFAULT_N_T,
    n_reps: int = DEFAULT_N_REPS,
    seed: int = 0,
    probes: bool = True,
    probe_folds: int = DEFAULT_FOLDS,
    probe_C: float = DEFAULT_C,
    probe_backend: str = "auto",
    scheduler: str | None = None,
    n_workers: int | None = None,
    processes: bool = True,
    progress: bool = True,
    on_cell_done: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Compute the results table of a run, reusing finished cells, and save it.

    Parameters
    ----------
    run_dir : str or path-like
        Run directory holding ``activations.h5`` (written by ``mftma cache``).
    epochs, layers, subsets : sequence, optional
        Restrict the analysis to these cached epochs, layers and subsets (default: all complete
        cache entries).
    kappa, n_t, n_reps, seed : float, int, int, int
        MFTMA margin, number of Gaussian t vectors, restarts of the center-structure optimisation,
        and the seed of the estimator and of the probes' fold shuffling.
    probes : bool
        Also compute probe accuracies (``probe_accuracy``, ``probe_accuracy_std`` and, for subset
        ``test``, ``transfer_probe_accuracy``).
    probe_folds, probe_C : int, float
        Stratified folds and inverse L2 strength of the probes
        (see :mod:`mftma.probes.classification`).
    probe_backend : {"auto", "torch", "sklearn"}
        Probe implementation; part of the settings key, so backends are never mixed in one table.
    scheduler : str, optional
        Address of a running Dask scheduler (``"tcp://host:8786"``); default: start a local cluster.
    n_workers : int, optional
        Workers of the local cluster (default: the number of cores, at most one per cell).
    processes : bool
        Local workers are processes (default) or threads of this process. Worker processes
        re-import the main module: in a script, call this under ``if __name__ == "__main__":``.
    progress : bool
        Show a progress bar with the time remaining.
    on_cell_done : callable, optional
        Called with each cell's record right after it is stored (e.g. to log or to stop early); a
        failed cell's record has an ``error`` message instead of ``metrics``.

    Returns
    -------
    pandas.DataFrame
        What the call asked for: the rows of the requested cells under these settings
        (:mod:`mftma.results.table`); ``attrs["settings"]`` maps their settings key to the
        settings. ``RUN_DIR/results/results.h5`` and ``results.csv`` get the whole table: every
        current cell of every settings analysed so far.

    Raises
    ------
    InputError
        Bad settings, or names that are not in the cache.
    DataFileError
        The activation cache is missing, foreign or incomplete for a requested cell, another
        process writes into the run directory (see :mod:`mftma.run_lock`), some cells failed
        (damaged or non-finite cache entries), or requested cells have no record under these settings
        and their features were dropped by a streaming analysis (both raised after the other cells are
        saved).

    Examples
    --------
    ``run_dir`` is a run directory cached by ``mftma cache`` (here: the shipped ``tiny`` config's run).

    >>> table = analyze_run(run_dir, epochs=[4], layers=["input"], n_t=50, probes=False, processes=False,
    ...                     progress=False)
    >>> geometry = table.pivot_table("value", ["epoch", "subset"], "metric")[["capacity", "radius", "dimension"]]
    >>> geometry.index.tolist()
    [(4, 'permuted'), (4, 'restored'), (4, 'shuffled'), (4, 'test'), (4, 'unpermuted')]
    >>> bool(((geometry > 0) & (geometry < 10)).all(axis=None))
    True
    """
    from mftma.cache.reader import CACHE_FILE

    _check_settings(kappa, n_t, n_reps, seed, n_workers)
    run_dir = pathlib.Path(run_dir)
    cache_path = run_dir / CACHE_FILE
    with run_directory_lock(run_dir, "analysis"):
        cells, settings, identities, dropped = _plan(cache_path, epochs, layers, subsets, kappa=kappa, n_t=n_t,
                                                     n_reps=n_reps, seed=seed, probes=probes, probe_folds=probe_folds,
                                                     probe_C=probe_C, probe_backend=probe_backend)
        store = CellStore(results_dir(run_dir) / CELLS_DIRNAME)
        unfinished = [cell for cell in cells if not store.finished(settings["key"], cell, identities[cell])]
        pending = [cell for cell in unfinished if cell not in dropped]
        failed = []
        if pending:
            warm_up_kernels(settings["estimator"])
            tasks = _Tasks(cache_path, settings, identities, store, on_cell_done)
            with _client(scheduler, min(n_workers or _core_count(), len(pending)), processes) as client:
                failed = tasks.run(client, pending, done=len(cells) - len(pending), progress=progress)
        table = store.table(run_dir.resolve().name, identities)
        save_results(run_dir, table)
    if failed:
        raise DataFileError(_failure_message(run_dir, failed))
    if len(pending) < len(unfinished):
        raise DataFileError(_dropped_message(run_dir, [cell for cell in unfinished if cell in dropped]))
    requested = pd.MultiIndex.from_tuples([(c.epoch, c.layer, c.subset) for c in cells])
    mine = (table["settings"] == settings["key"]) & pd.MultiIndex.from_frame(
        table[["epoch", "layer", "subset"]]).isin(requested)
    asked = table[mine].reset_index(drop=True)
    asked.attrs = {"settings": {settings["key"]: settings}}
    return asked


def unfinished_cells(run_dir, epochs=None, layers=None, subsets=None, *, kappa=DEFAULT_KAPPA, n_t=DEFAULT_N_T,
                     n_reps=DEFAULT_N_REPS, seed=0, probes=True, probe_folds=DEFAULT_FOLDS, probe_C=DEFAULT_C,
                     probe_backend="auto") -> list[Cell]:
    """The requested cells that :func:`analyze_run` with these settings would compute (no stored record).

    Parameters are those of :func:`analyze_run`; dropped cache entries count as cells (their records are reused).

    Returns
    -------
    list of Cell
        The cells without a finished record under these settings and their current identity.
    """
    from mftma.cache.reader import CACHE_FILE

    run_dir = pathlib.Path(run_dir)
    cells, settings, identities, _ = _plan(run_dir / CACHE_FILE, epochs, layers, subsets, kappa=kappa, n_t=n_t,
                                           n_reps=n_reps, seed=seed, probes=probes, probe_folds=probe_folds,
                                           probe_C=probe_C, probe_backend=probe_backend)
    store = CellStore(results_dir(run_dir) / CELLS_DIRNAME)
    return [cell for cell in cells if not store.finished(settings["key"], cell, identities[cell])]


def _plan(cache_path, epochs, layers, subsets, *, kappa, n_t, n_reps, seed, probes, probe_folds, probe_C,
          probe_backend):
    """The requested cells, the settings (with their key), every cell's identity and the dropped cells."""
    from mftma.cache.reader import ActivationCache

    with ActivationCache(cache_path) as cache:
        entries = complete_entries(cache)
        cells = select_cells(cache, epochs, layers, subsets, entries=entries)
        probe = _probe_settings(cache, cells, probe_folds, probe_C, seed, probe_backend) if probes else None
        settings = analysis_settings(cache, kappa=kappa, n_t=n_t, n_reps=n_reps, seed=seed, probe=probe)
        identities = cell_identities(cache, entries)
    gone = entries[entries["dropped"]]
    dropped = {(int(e), str(l), str(s)) for e, l, s in zip(gone["epoch"], gone["layer"], gone["subset"])}
    return cells, settings, identities, {cell for cell in cells if (cell.epoch, cell.layer, cell.subset) in dropped}


def complete_entries(cache) -> pd.DataFrame:
    """The cache's complete entries (:meth:`~mftma.cache.reader.ActivationCache.entries`), warning of others."""
    entries = cache.entries()
    if not entries["complete"].all():
        warnings.warn(f"{int((~entries['complete']).sum())} incomplete entries of {cache.path} are skipped; "
                      "rerun `mftma cache` to finish them", stacklevel=3)
    return entries[entries["complete"]]


def cell_identities(cache, entries: pd.DataFrame) -> dict:
    """``{Cell: identity}`` of every entry: its cache entry's identity, for ``test`` joined by the
    identity of the unpermuted entry its transfer probe trains on (when that entry is complete)."""
    present = set(zip(entries["epoch"], entries["layer"], entries["subset"]))
    identities = {}
    for cell in select_cells(cache, entries=entries):
        sources = [cell.subset, *(["unpermuted"] if cell.subset == "test"
                                  and (cell.epoch, cell.layer, "unpermuted") in present else [])]
        identities[cell] = "+".join(cache.entry_identity(cell.epoch, cell.layer, subset) for subset in sources)
    return identities


def select_cells(cache, epochs=None, layers=None, subsets=None, *, entries=None) -> list[Cell]:
    """The complete cache entries in the requested epochs, layers and subsets.

    ``entries``: the complete entries when already read (default :func:`complete_entries`).

    Raises
    ------
    InputError
        A requested name is not in the cache, or nothing is left to analyse.
    """
    entries = complete_entries(cache) if entries is None else entries
    # Names in numeric, network and subset order (the cache's), in messages too.
    for column, wanted, order in (("epoch", epochs, cache.epochs), ("layer", layers, cache.layers),
                                  ("subset", subsets, cache.subsets)):
        if wanted is None:
            continue
        present = set(entries[column])
        unknown = list(dict.fromkeys(name for name in wanted if name not in present))
        if unknown:
            known = [name for name in order if name in present]
            raise InputError(f"{column}s {unknown} have no complete cache entries in {cache.path}; cached: {known}")
        entries = entries[entries[column].isin(wanted)]
    if entries.empty:
        raise InputError(f"no complete cache entries to analyse in {cache.path}; run `mftma cache` first")
    # The layer's position in the model (not among the cached layers), so partial caches agree.
    model_index = {layer: int(cache.layer_info(layer)["index"]) for layer in set(entries["layer"])}
    return [
        Cell(int(row.epoch), str(row.layer), model_index[row.layer], str(row.subset))
        for row in entries.itertuples(index=False)
    ]


def estimator_settings(*, kappa, n_t, n_reps, seed) -> dict:
    """The estimator's part of :func:`analysis_settings`: what a cell's geometry depends on."""
    return {"kappa": float(kappa), "n_t": int(n_t), "n_reps": int(n_reps), "seed": int(seed),
            "explained_variance": EXPLAINED_VARIANCE, "revision": SEEDED_RESULTS_REVISION}


def analysis_settings(cache, *, kappa, n_t, n_reps, seed, probe) -> dict:
    """Everything a cell's numbers depend on, with ``key``: a hash of the rest."""
    metadata = cache.metadata
    settings = {
        "estimator": estimator_settings(kappa=kappa, n_t=n_t, n_reps=n_reps, seed=seed),
        "probe": probe,
        "cache": {"run_settings_hash": metadata.get("run_settings_hash"),
                  "cache_settings": metadata.get("cache_settings")},
    }
    encoded = json.dumps(settings, sort_keys=True).encode()
    return {**settings, "key": hashlib.sha256(encoded).hexdigest()[:16]}


def analyze_cell(cache_path, cell: Cell, settings: dict) -> dict:
    """Compute one cell's metrics (the task each Dask worker runs).

    Returns
    -------
    dict
        ``{"cell": {...}, "key": settings key, "metrics": {name: value}, "seconds": {...}, "warnings": [...]}``,
        or ``{"cell": {...}, "key": ..., "error": message}`` when the cache entry cannot be read or holds
        non-finite values (the error is reported, not raised inside the worker). The estimator's
        :class:`~mftma.errors.MFTMAWarning` messages are recorded in ``warnings`` (not printed) and counted
        in the metric ``warned_manifolds``.
    """
    from mftma.cache.reader import ActivationCache

    record = {"cell": dataclasses.asdict(cell), "key": settings["key"]}
    metrics, seconds = {}, {}
    try:
        with _single_threaded(), ActivationCache(cache_path) as cache, _recorded_warnings() as caught:
            with _timer(seconds, "geometry"):
                manifolds = _finite(cache.manifolds(cell.epoch, cell.layer, cell.subset), cell.subset)
                metrics.update(_geometry(manifolds, settings["estimator"]))
            if settings["probe"] is not None:
                with _timer(seconds, "probe"):
                    metrics.update(_probe_metrics(cache, cell, settings["probe"]))
    except (DataFileError, OSError) as error:
        return {**record, "error": f"{type(error).__name__}: {error}"}
    metrics = {name: float(value) for name, value in metrics.items()}
    metrics[WARNED_METRIC] = float(len(caught))
    return {**record, "metrics": metrics, "seconds": seconds, "warnings": caught}


@contextlib.contextmanager
def _recorded_warnings():
    """Collect the cell's :class:`~mftma.errors.MFTMAWarning` messages instead of printing them.

    Yields the list of messages, one per warned manifold (the estimator warns once per manifold); other
    warnings are passed on. The warnings filters are process-wide, so cells running in threads of one
    process (``processes=False``) take turns here; worker processes run one cell each at a time anyway.
    """
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MFTMAWarning)
        messages = []
        yield messages
    for warning in caught:
        if issubclass(warning.category, MFTMAWarning):
            messages.append(str(warning.message))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def warning_summary(table: pd.DataFrame, run_dir) -> str | None:
    """One paragraph on the cells whose estimator warned (metric ``warned_manifolds`` > 0), or None.

    Parameters
    ----------
    table : pandas.DataFrame
        A results table (:func:`analyze_run`).
    run_dir : str or path-like
        Its run directory, named in the message (where the records are).
    """
    warned = table[(table["metric"] == WARNED_METRIC) & (table["value"] > 0)]
    if warned.empty:
        return None
    warned = warned.sort_values(["epoch", "layer_index", "subset"])
    cells = [f"epoch {row.epoch} {row.layer} {row.subset} ({int(row.value)})" for row in warned.itertuples()]
    shown = ", ".join(cells[:MAX_LISTED_CELLS]) + (", ..." if len(cells) > MAX_LISTED_CELLS else "")
    directory = results_dir(run_dir)
    return (f"MFTMAWarning in {len(cells)} of {table[['epoch', 'layer', 'subset']].drop_duplicates().shape[0]} "
            f"cells ({int(warned['value'].sum())} manifolds): {shown}. A warned manifold's center lies almost "
            "entirely in the common center directions, so its radius and dimension may be outliers. Per cell: "
            f"metric {WARNED_METRIC!r} in {directory / 'results.csv'}; messages under {directory / CELLS_DIRNAME}.")


def _finite(arrays, subset: str):
    """``arrays`` (an array or a list of them), or :class:`DataFileError` if any value is NaN or infinite."""
    if not all(np.isfinite(array).all() for array in (arrays if isinstance(arrays, list) else [arrays])):
        raise DataFileError(f"the cache entry of subset {subset!r} holds non-finite (NaN or infinite) features")
    return arrays


def _geometry(manifolds, estimator: dict) -> dict:
    from mftma.estimator.analysis import analyze_manifolds
    from mftma.estimator.dimension import data_dimension

    result = analyze_manifolds(manifolds, kappa=estimator["kappa"], n_t=estimator["n_t"],
                               n_reps=estimator["n_reps"], seed=estimator["seed"])
    participation_ratio, explained_variance_dim, _ = data_dimension(manifolds, perc=estimator["explained_variance"])
    return {
        **result.summary(),
        "participation_ratio": participation_ratio,
        "explained_variance_dim": explained_variance_dim,
    }


def warm_up_kernels(estimator: dict) -> None:
    """Compile the estimator's numba kernels here, once, before the workers start.

    The kernels are compiled with ``cache=True``: this writes numba's on-disk cache (or loads it, a second
    or so, when it is warm), so the workers load instead of each compiling the same kernels at once (on a
    fresh install that doubled the quickstart's analysis time). Runs the cells' own geometry code on tiny
    float32 inputs shaped like the cache's manifolds, with more features than samples and with fewer.
    """
    rng = np.random.default_rng(0)
    for shape in ((3, 12, 6), (3, 6, 12)):
        _geometry(list(rng.standard_normal(shape).astype(np.float32)), estimator)


def _probe_metrics(cache, cell: Cell, probe: dict) -> dict:
    from mftma.probes.classification import probe_accuracy, transfer_accuracy

    features, labels = cache.features(cell.epoch, cell.layer, cell.subset)
    features = _finite(features, cell.subset)
    options = {"C": probe["C"], "max_iter": probe["max_iter"], "backend": probe["backend"]}
    score = probe_accuracy(features, labels, n_splits=probe["n_splits"], seed=probe["seed"], **options)
    metrics = {"probe_accuracy": score.mean, "probe_accuracy_std": score.std}
    if cell.subset == "test" and "unpermuted" in cache.subsets:
        train_features, train_labels = cache.features(cell.epoch, cell.layer, "unpermuted")
        train_features = _finite(train_features, "unpermuted")
        metrics["transfer_probe_accuracy"] = transfer_accuracy(train_features, train_labels, features, labels, **options)
    return metrics


class CellStore:
    """The stored cell records of every settings key: ``CELLS_DIR/<key>/*.json`` plus ``<key>/settings.json``."""

    def __init__(self, cells_dir):
        self.path = pathlib.Path(cells_dir)

    def finished(self, key: str, cell: Cell, identity: str) -> bool:
        """Whether ``cell`` has a successful record under ``key`` computed from the entry ``identity``."""
        path = self.path / key / cell.filename
        if not path.exists():
            return False
        record = _read_json(path)
        return record.get("identity") == identity and "error" not in record

    def save(self, settings: dict, record: dict) -> None:
        """Store one cell's record atomically (and the settings, on the first save under its key)."""
        directory = self.path / settings["key"]
        if not (directory / SETTINGS_FILE).exists():
            _write_json(directory / SETTINGS_FILE, settings)
        _write_json(directory / Cell(**record["cell"]).filename, record)

    def table(self, run_name: str, identities: dict) -> pd.DataFrame:
        """Every successful record, of every key, whose identity is the current one of its cell.

        ``identities`` maps each current :class:`Cell` to its identity (:func:`cell_identities`);
        ``attrs["settings"]`` maps each settings key of the table to its settings.
        """
        rows, settings = [], {}
        for directory in sorted(path for path in self.path.glob("*") if (path / SETTINGS_FILE).exists()):
            for path in sorted(directory.glob("e*.json")):
                record = _read_json(path)
                if "error" in record or identities.get(Cell(**record["cell"])) != record.get("identity"):
                    continue
                settings.setdefault(directory.name, _read_json(directory / SETTINGS_FILE))
                rows += [{**record["cell"], "run": run_name, "metric": metric, "value": value,
                          "settings": directory.name} for metric, value in record["metrics"].items()]
        frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        frame.attrs["settings"] = settings
        return validate_results(frame)


class _Tasks:
    """Submits cells to a Dask client and stores each record, with its cell's identity, as it arrives."""

    def __init__(self, cache_path, settings, identities: dict, store: CellStore, on_cell_done):
        self.cache_path = str(cache_path)
        self.settings = settings
        self.identities = identities
        self.store = store
        self.on_cell_done = on_cell_done

    def run(self, client, cells: list[Cell], *, done: int, progress: bool) -> list[dict]:
        """Compute ``cells``; return the error records of those that failed."""
        from dask.distributed import as_completed
        from mftma.progress import progress_bar

        futures = [
            client.submit(analyze_cell, self.cache_path, cell, self.settings, pure=False) for cell in cells
        ]
        failed = []
        with progress_bar(total=done + len(cells), initial=done, unit="cell", desc="analyze", enabled=progress) as bar:
            for future in as_completed(futures):
                record = future.result()
                record["identity"] = self.identities[Cell(**record["cell"])]
                self.store.save(self.settings, record)
                bar.update()
                if "error" in record:
                    failed.append(record)
                if self.on_cell_done is not None:
                    self.on_cell_done(record)
        return failed


def _failure_message(run_dir, failed: list[dict]) -> str:
    cells = "; ".join(f"epoch {r['cell']['epoch']}, layer {r['cell']['layer']!r}, subset {r['cell']['subset']!r}: "
                      f"{r['error']}" for r in sorted(failed, key=lambda r: Cell(**r["cell"]).filename))
    return (f"{len(failed)} cell(s) could not be analysed and are not in the table ({cells}). Their cache entries "
            f"are damaged or hold non-finite features: rebuild the cache with `mftma cache {run_dir} --rebuild` "
            f"(a checkpoint whose activations are non-finite diverged: retrain it), then rerun `mftma analyze`; "
            "the finished cells are kept")


def _dropped_message(run_dir, cells: list[Cell]) -> str:
    epochs = sorted({cell.epoch for cell in cells})
    layers = list(dict.fromkeys(cell.layer for cell in sorted(cells, key=lambda cell: cell.layer_index)))
    listed = "; ".join(f"epoch {c.epoch}, layer {c.layer!r}, subset {c.subset!r}" for c in cells[:MAX_LISTED_CELLS])
    more = ", ..." if len(cells) > MAX_LISTED_CELLS else ""
    return (f"{len(cells)} requested cell(s) have no result under these settings and their cache features were "
            f"dropped after a streaming analysis ({listed}{more}); the other cells are saved. Analyse them with "
            f"`mftma analyze {run_dir} --stream` and these settings (it caches each epoch again), or cache them "
            f"again first: `mftma cache {run_dir} --epochs {' '.join(map(str, epochs))} --layers {' '.join(layers)}`")


@contextlib.contextmanager
def _client(scheduler: str | None, n_workers: int, processes: bool):
    """A Dask client of the given scheduler, or of a local cluster of single-threaded workers."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, ValueError) as error:
            raise InputError(f"cannot connect to the Dask scheduler at {scheduler!r}: {error}") from None
        with client:
            yield client
        return
    # Errors of the tasks reach us through their futures; the cluster's own warnings (e.g. slow
    # worker shutdown on a busy machine) would only clutter the progress bar.
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _single_threaded():
    """One BLAS/OpenMP, numba and torch thread for this task: the cluster runs one task per core."""
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        numba.set_num_threads(previous[0])
        torch.set_num_threads(previous[1])


@contextlib.contextmanager
def _timer(seconds: dict, name: str):
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start


def _write_json(path: pathlib.Path, payload: dict) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=1, sort_keys=True))


def _read_json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataFileError(f"cannot read the cell record {path} ({error}); delete it to recompute the cell") from None


def _core_count() -> int:
    from dask.system import CPU_COUNT

    return CPU_COUNT


def _probe_settings(cache, cells: list[Cell], n_splits: int, C: float, seed: int, backend: str) -> dict:
    entries = cache.entries().set_index(["epoch", "layer", "subset"])
    smallest = min(int(entries.loc[(cell.epoch, cell.layer, cell.subset), "M"]) for cell in cells)
    if smallest < n_splits:
        raise InputError(
            f"the cache holds {smallest} examples per class, fewer than the {n_splits} probe folds; "
            "lower the probe folds, cache more examples per class, or skip the probes"
        )
    backend = resolve_backend(backend)
    return {"C": float(C), "n_splits": int(n_splits), "max_iter": DEFAULT_MAX_ITER, "seed": int(seed),
            "backend": backend, **({"revision": TORCH_FIT_REVISION} if backend == "torch" else {})}


def _check_settings(kappa, n_t, n_reps, seed, n_workers) -> None:
    if not (kappa == kappa and abs(kappa) != float("inf")):
        raise InputError(f"kappa must be a finite number, got {kappa}")
    for name, value, smallest in (("n_t", n_t, 1), ("n_reps", n_reps, 1), ("seed", seed, 0)):
        if int(value) != value or value < smallest:
            raise InputError(f"{name} must be an integer >= {smallest}, got {value}")
    if n_workers is not None and (int(n_workers) != n_workers or n_workers < 1):
        raise InputError(f"n_workers must be a positive integer, got {n_workers}")
