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
estimator and probe settings and of the cache's identity (run settings hash, cache settings), so a
rerun skips finished cells, an interrupted analysis resumes where it stopped, and changed settings
or a rebuilt cache never reuse old cells. Every estimator and probe call uses the same seed, so
differences between cells are not blurred by different random draws.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import pathlib
import time
import warnings
from collections.abc import Callable, Sequence

import pandas as pd

from mftma.atomic import atomic_path
from mftma.errors import DataFileError, InputError
from mftma.estimator import SEEDED_RESULTS_REVISION
from mftma.pipeline.results import results_dir, save_results, validate_results
from mftma.probes.classification import DEFAULT_C, DEFAULT_FOLDS, DEFAULT_MAX_ITER, resolve_backend
from mftma.run_lock import run_directory_lock

CELLS_DIRNAME = "cells"
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
    kappa: float = 0.0,
    n_t: int = 200,
    n_reps: int = 10,
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
        Called with each cell's record right after it is stored (e.g. to log or to stop early).

    Returns
    -------
    pandas.DataFrame
        The results table (:mod:`mftma.pipeline.results`) of every cell stored under these
        settings, also written to ``RUN_DIR/results/results.h5`` and ``results.csv``;
        ``attrs["settings"]`` holds the settings and their key.

    Raises
    ------
    InputError
        Bad settings, or names that are not in the cache.
    DataFileError
        The activation cache is missing, foreign or incomplete for a requested cell, or another
        process writes into the run directory (see :mod:`mftma.run_lock`).

    Examples
    --------
    ``run_dir`` is a run directory cached by ``mftma cache`` (here: the shipped ``tiny`` config's run).

    >>> table = analyze_run(run_dir, epochs=[4], layers=["input"], n_t=50, probes=False, processes=False,
    ...                     progress=False)
    >>> geometry = table.pivot_table("value", ["epoch", "subset"], "metric")[["capacity", "radius", "dimension"]]
    >>> geometry.index.tolist()
    [(4, 'permuted'), (4, 'restored'), (4, 'test'), (4, 'unpermuted')]
    >>> bool(((geometry > 0) & (geometry < 10)).all(axis=None))
    True
    """
    from mftma.cache.reader import CACHE_FILE, ActivationCache

    _check_settings(kappa, n_t, n_reps, seed, n_workers)
    run_dir = pathlib.Path(run_dir)
    cache_path = run_dir / CACHE_FILE
    with run_directory_lock(run_dir, "analysis"):
        with ActivationCache(cache_path) as cache:
            cells = select_cells(cache, epochs, layers, subsets)
            probe = _probe_settings(cache, cells, probe_folds, probe_C, seed, probe_backend) if probes else None
            settings = analysis_settings(cache, kappa=kappa, n_t=n_t, n_reps=n_reps, seed=seed, probe=probe)
        store = CellStore(results_dir(run_dir) / CELLS_DIRNAME, settings)
        pending = [cell for cell in cells if not store.has(cell)]
        if pending:
            tasks = _Tasks(cache_path, settings, store, on_cell_done)
            with _client(scheduler, min(n_workers or _core_count(), len(pending)), processes) as client:
                tasks.run(client, pending, done=len(cells) - len(pending), progress=progress)
        table = store.table(run_name=run_dir.resolve().name)
        save_results(run_dir, table)
        return table


def select_cells(cache, epochs=None, layers=None, subsets=None) -> list[Cell]:
    """The complete cache entries in the requested epochs, layers and subsets.

    Raises
    ------
    InputError
        A requested name is not in the cache, or nothing is left to analyse.
    """
    entries = cache.entries()
    if not entries["complete"].all():
        warnings.warn(f"{int((~entries['complete']).sum())} incomplete entries of {cache.path} are skipped; "
                      "rerun `mftma cache` to finish them", stacklevel=2)
    entries = entries[entries["complete"]]
    for column, wanted in (("epoch", epochs), ("layer", layers), ("subset", subsets)):
        if wanted is None:
            continue
        unknown = sorted(set(wanted) - set(entries[column]), key=str)
        if unknown:
            known = sorted(set(entries[column]), key=str)
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


def analysis_settings(cache, *, kappa, n_t, n_reps, seed, probe) -> dict:
    """Everything a cell's numbers depend on, with ``key``: a hash of the rest."""
    metadata = cache.metadata
    settings = {
        "estimator": {"kappa": float(kappa), "n_t": int(n_t), "n_reps": int(n_reps), "seed": int(seed),
                      "explained_variance": EXPLAINED_VARIANCE, "revision": SEEDED_RESULTS_REVISION},
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
        ``{"cell": {...}, "key": settings key, "metrics": {name: value}, "seconds": {...}}``.
    """
    from mftma.cache.reader import ActivationCache

    metrics, seconds = {}, {}
    with _single_threaded(), ActivationCache(cache_path) as cache:
        with _timer(seconds, "geometry"):
            metrics.update(_geometry(cache.manifolds(cell.epoch, cell.layer, cell.subset), settings["estimator"]))
        if settings["probe"] is not None:
            with _timer(seconds, "probe"):
                metrics.update(_probe_metrics(cache, cell, settings["probe"]))
    metrics = {name: float(value) for name, value in metrics.items()}
    return {"cell": dataclasses.asdict(cell), "key": settings["key"], "metrics": metrics, "seconds": seconds}


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


def _probe_metrics(cache, cell: Cell, probe: dict) -> dict:
    from mftma.probes.classification import probe_accuracy, transfer_accuracy

    features, labels = cache.features(cell.epoch, cell.layer, cell.subset)
    options = {"C": probe["C"], "max_iter": probe["max_iter"], "backend": probe["backend"]}
    score = probe_accuracy(features, labels, n_splits=probe["n_splits"], seed=probe["seed"], **options)
    metrics = {"probe_accuracy": score.mean, "probe_accuracy_std": score.std}
    if cell.subset == "test" and "unpermuted" in cache.subsets:
        train_features, train_labels = cache.features(cell.epoch, cell.layer, "unpermuted")
        metrics["transfer_probe_accuracy"] = transfer_accuracy(train_features, train_labels, features, labels, **options)
    return metrics


class CellStore:
    """The finished cells of one settings key: ``CELLS_DIR/<key>/*.json`` plus ``settings.json``."""

    def __init__(self, cells_dir, settings: dict):
        self.settings = settings
        self.path = pathlib.Path(cells_dir) / settings["key"]

    def has(self, cell: Cell) -> bool:
        return (self.path / cell.filename).exists()

    def save(self, record: dict) -> None:
        """Store one cell's record atomically (and the settings, on the first save)."""
        if not (self.path / SETTINGS_FILE).exists():
            _write_json(self.path / SETTINGS_FILE, self.settings)
        _write_json(self.path / Cell(**record["cell"]).filename, record)

    def records(self) -> list[dict]:
        return [_read_json(path) for path in sorted(self.path.glob("e*.json"))]

    def table(self, run_name: str) -> pd.DataFrame:
        """All stored cells as a results table, with the settings in ``attrs``."""
        rows = [
            {**record["cell"], "run": run_name, "metric": metric, "value": value}
            for record in self.records()
            for metric, value in record["metrics"].items()
        ]
        frame = pd.DataFrame(rows, columns=["run", "epoch", "layer", "layer_index", "subset", "metric", "value"])
        frame.attrs["settings"] = self.settings
        return validate_results(frame)


class _Tasks:
    """Submits cells to a Dask client and stores each record as it arrives."""

    def __init__(self, cache_path, settings, store: CellStore, on_cell_done):
        self.cache_path = str(cache_path)
        self.settings = settings
        self.store = store
        self.on_cell_done = on_cell_done

    def run(self, client, cells: list[Cell], *, done: int, progress: bool) -> None:
        from dask.distributed import as_completed
        from tqdm.auto import tqdm

        futures = [
            client.submit(analyze_cell, self.cache_path, cell, self.settings, pure=False) for cell in cells
        ]
        with tqdm(total=done + len(cells), initial=done, unit="cell", desc="analyze", disable=not progress) as bar:
            for future in as_completed(futures):
                record = future.result()
                self.store.save(record)
                bar.update()
                if self.on_cell_done is not None:
                    self.on_cell_done(record)


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
    return {"C": float(C), "n_splits": int(n_splits), "max_iter": DEFAULT_MAX_ITER, "seed": int(seed),
            "backend": resolve_backend(backend)}


def _check_settings(kappa, n_t, n_reps, seed, n_workers) -> None:
    if not (kappa == kappa and abs(kappa) != float("inf")):
        raise InputError(f"kappa must be a finite number, got {kappa}")
    for name, value, smallest in (("n_t", n_t, 1), ("n_reps", n_reps, 1), ("seed", seed, 0)):
        if int(value) != value or value < smallest:
            raise InputError(f"{name} must be an integer >= {smallest}, got {value}")
    if n_workers is not None and (int(n_workers) != n_workers or n_workers < 1):
        raise InputError(f"n_workers must be a positive integer, got {n_workers}")
