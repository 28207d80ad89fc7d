"""The whole pipeline in one call: train -> cache -> analyze (geometry and probes) -> plot -> rollback -> summary.

``quickstart(out_dir, seeds=K)`` trains K runs of the default MNIST-1D config
(``mftma/configs/mnist1d.yaml``) that differ in every seed (run i adds i to the data, corruption,
training and cache seeds) into ``OUT/run_0`` ... ``OUT/run_<K-1>`` (the full profile trains them in
parallel processes, one per CPU core); for each it caches and analyses about seven log-spaced epochs
(always including 0, the epoch of best test accuracy and the last one),
draws every figure and runs the layer-rollback grid. ``OUT/summary.json`` gives, per run, the geometry
at the input and the final analysed layer at the best and the last epoch, test accuracies, the best
rollback gains and the four claims of :mod:`mftma.pipeline.claims`; over the runs, every claim's
statistics per seed, their mean, 95 % interval and verdict (:mod:`mftma.pipeline.verdicts`), and the
rollback gains likewise. Every stage resumes: training continues after its last epoch, cached entries,
analysed cells and rollback cells are kept, and figures are redrawn only when the tables they show changed.

The ``ci`` profile runs the same stages on the tiny config with a cheap estimator, in seconds.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mftma.errors import InputError
from mftma.estimator import DEFAULT_KAPPA, DEFAULT_N_REPS, DEFAULT_N_T

SUMMARY_FILE = "summary.json"
#: Run directories are ``OUT/run_0``, ``OUT/run_1``, ... (:func:`run_dirname`).
RUN_DIRNAME = "run"
#: Config sections whose ``seed`` differs between the quickstart's runs.
SEEDED_SECTIONS = ("data", "corruption", "training", "cache")
#: Record of the tables the figures were drawn from, in the figures folder.
SOURCES_FILE = "sources.json"
#: Metrics reported in the summary's geometry section.
SUMMARY_METRICS = ("capacity", "radius", "dimension")


@dataclass(frozen=True)
class Profile:
    """Settings of a quickstart profile.

    Attributes
    ----------
    config : str
        Shipped config name (or a path to a YAML config).
    log_epochs : int
        Number of log-spaced checkpoint epochs to cache and analyse (0, best and last are added).
    n_t, n_reps : int
        MFTMA Gaussian vectors and center-structure restarts.
    processes : bool
        Dask workers are processes (True) or threads of this process; with True the runs are also
        trained in parallel processes (:func:`training_in_background`).
    formats : tuple of str
        Figure formats.
    seeds : int
        Default number of runs K (each with all its seeds shifted, :func:`seeded_config`).
    """

    config: str
    log_epochs: int
    n_t: int
    n_reps: int
    processes: bool
    formats: tuple[str, ...]
    seeds: int


PROFILES = {
    # Sized so that the default (3 seeds) runs in 10 minutes on 2 idle CPU cores; `mftma analyze` and
    # `mftma plot --formats pdf` add epochs and formats to its runs.
    "full": Profile(config="mnist1d", log_epochs=6, n_t=DEFAULT_N_T, n_reps=DEFAULT_N_REPS, processes=True,
                    formats=("png",), seeds=3),
    "ci": Profile(config="tiny", log_epochs=2, n_t=20, n_reps=1, processes=False, formats=("png",), seeds=2),
}


def analysed_epochs(run, count: int) -> list[int]:
    """About ``count`` log-spaced checkpoint epochs plus 0, the best and the last epoch.

    Examples
    --------
    >>> class FakeRun:
    ...     def checkpoint_epochs(self): return list(range(61))
    ...     def best_epoch(self): return 9
    >>> analysed_epochs(FakeRun(), 6)
    [0, 1, 2, 5, 9, 12, 26, 60]
    """
    from mftma.experiments.checkpoints import checkpoint_schedule

    available = run.checkpoint_epochs()
    final = available[-1]
    log_spaced = checkpoint_schedule("log", final, log_count=count)
    return sorted({epoch for epoch in log_spaced if epoch in set(available)} | {0, run.best_epoch(), final})


class _Stages:
    """Runs named stages, timing each."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, function, *args, **kwargs):
        if self.progress:
            print(f"[quickstart] {name} ...", flush=True)
        began = time.perf_counter()
        result = function(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - began, 2)
        if self.progress:
            print(f"[quickstart] {name} done in {self.seconds[name]:.1f} s", flush=True)
        return result


def seeded_config(config, index: int):
    """The config of the quickstart's run ``index``: every seed (data, corruption, training, cache) + index.

    Examples
    --------
    >>> from mftma.experiments.config import load_config
    >>> config = seeded_config(load_config("tiny"), 2)
    >>> config.data.seed, config.corruption.seed, config.training.seed, config.cache.seed
    (2, 2, 2, 2)
    """
    return config.replace(**{section: {"seed": getattr(config, section).seed + index} for section in SEEDED_SECTIONS})


def quickstart(out_dir, profile: str = "full", config=None, seeds: int | None = None, progress: bool = True) -> dict:
    """Run the whole pipeline on ``seeds`` runs into ``out_dir`` and return the summary it writes.

    Parameters
    ----------
    out_dir : str or Path
        Output folder: ``run_0/`` ... ``run_<K-1>/`` (run directories, with ``results/`` and figures) and
        ``summary.json``.
    profile : str
        ``"full"`` (the default MNIST-1D replication, minutes per seed) or ``"ci"`` (tiny, seconds).
    config : str or Path, optional
        A config name or YAML path replacing the profile's config.
    seeds : int, optional
        Number of runs K (default: the profile's); run i adds i to every seed of the config
        (:func:`seeded_config`).
    progress : bool
        Print the stages and show progress bars.

    Returns
    -------
    dict
        The content of ``OUT/summary.json`` (see :func:`summarize_runs`), with the profile, the
        number of seeds and the time of each run's stages.

    Raises
    ------
    InputError
        Unknown profile, fewer than one seed, or an ``OUT/run_<i>`` holds a run with other settings.
    DataFileError
        Another process writes into an ``OUT/run_<i>`` (its lock is held while its pipeline runs, see
        :mod:`mftma.run_lock`).
    """
    from mftma.atomic import atomic_write_text
    from mftma.experiments.config import load_config
    from mftma.pipeline.analyze import estimator_settings

    if profile not in PROFILES:
        raise InputError(f"unknown quickstart profile {profile!r}; choose one of {list(PROFILES)}")
    settings = PROFILES[profile]
    seeds = settings.seeds if seeds is None else seeds
    if not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"the number of seeds must be a positive integer, got {seeds!r}")
    out_dir = Path(out_dir)
    base_config = load_config(settings.config if config is None else config)
    began = time.perf_counter()
    configs = [seeded_config(base_config, index) for index in range(seeds)]
    background = settings.processes
    estimator = estimator_settings(kappa=DEFAULT_KAPPA, n_t=settings.n_t, n_reps=settings.n_reps, seed=0)
    runs = []
    with training_in_background(out_dir, configs, progress, estimator) if background else \
            contextlib.nullcontext((None, None)) as (trainings, compiled):
        for index, run_config in enumerate(configs):
            trained_seconds = None
            if background:
                trained_seconds = trainings[index].result()
                compiled.result()
            if progress:
                print(f"[quickstart] run {index + 1} of {seeds} ({run_dirname(index)})", flush=True)
            runs.append(_run_pipeline(out_dir, index, run_config, settings, progress, trained_seconds))
    summary = {"profile": {"name": profile, **asdict(settings), "seeds": seeds,
                           "config": str(config or settings.config)},
               **summarize_runs(runs),
               "timings_s": {"total": round(time.perf_counter() - began, 2)}}
    atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2, allow_nan=False))
    return summary


def run_dirname(index: int) -> str:
    """Folder of the quickstart's run ``index`` inside its output folder."""
    return f"{RUN_DIRNAME}_{index}"


@contextlib.contextmanager
def training_in_background(out_dir, configs, progress: bool = True, estimator: dict | None = None):
    """Train the quickstart's runs ``OUT/run_<i>`` (config ``configs[i]``) in background processes.

    One process per CPU core (at most one per job), each training with its config's thread count, so
    every run is the same as when trained alone. A finished run is left as it is, an interrupted one
    resumes (as :func:`mftma.experiments.training.train`). The caller can work on run ``i`` (e.g. analyse
    it) as soon as its training is done, while later runs still train. With ``estimator`` (the analysis's
    estimator settings), the first job compiles the estimator's numba kernels
    (:func:`mftma.pipeline.analyze.warm_up_kernels`), so that on a fresh install the compilation runs
    beside the training instead of before the first analysis.

    Yields
    ------
    trainings : list of concurrent.futures.Future
        Per run, the seconds its training took (``result()`` waits for it; a failed training raises
        its error there).
    compiled : concurrent.futures.Future or None
        The kernels' compilation (None without ``estimator``).
    """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    from mftma.pipeline.analyze import warm_up_kernels

    jobs = len(configs) + (estimator is not None)
    workers = max(1, min(jobs, os.cpu_count() or 1))
    if progress:
        print(f"[quickstart] training {len(configs)} runs in the background, {workers} jobs at a time", flush=True)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        compiled = None if estimator is None else pool.submit(warm_up_kernels, estimator)
        trainings = [pool.submit(_train_run, Path(out_dir) / run_dirname(index), config)
                     for index, config in enumerate(configs)]
        try:
            yield trainings, compiled
        except BaseException:
            for future in trainings:  # interrupted: runs not started yet are not trained
                future.cancel()
            raise


def _train_run(run_dir: Path, config) -> float:
    """Train one run (in a worker process of :func:`training_in_background`); its seconds."""
    from mftma.experiments.training import train
    from mftma.run_lock import run_directory_lock

    began = time.perf_counter()
    with run_directory_lock(run_dir, "quickstart", create=True):
        train(config, run_dir, progress=False)
    return round(time.perf_counter() - began, 2)


def _run_pipeline(out_dir: Path, index: int, run_config, settings: Profile, progress: bool,
                  trained_seconds: float | None = None) -> dict:
    """Train, cache, analyse, roll back and plot one run; its :func:`summarize` with epochs, files, timings.

    A run trained by :func:`training_in_background` (``trained_seconds``: how long it took) is not
    trained again.
    """
    from mftma.cache import cache_activations
    from mftma.experiments.run import Run
    from mftma.experiments.training import train
    from mftma.pipeline.analyze import analyze_run
    from mftma.pipeline.rollback import rollback
    from mftma.run_lock import run_directory_lock

    run_dir = out_dir / run_dirname(index)
    stage = _Stages(progress)
    began = time.perf_counter() - (trained_seconds or 0.0)
    with run_directory_lock(run_dir, "quickstart", create=True):
        if trained_seconds is None:
            run = stage("train", train, run_config, run_dir, progress=progress)
        else:
            run, stage.seconds["train"] = Run(run_dir), trained_seconds
        epochs = analysed_epochs(run, settings.log_epochs)
        stage("cache", cache_activations, run, epochs=epochs, progress=progress)
        results = stage("analyze", analyze_run, run.path, epochs=epochs, n_t=settings.n_t, n_reps=settings.n_reps,
                        processes=settings.processes, progress=progress)
        table = stage("rollback", rollback, run, progress=progress)
        figures = stage("plot", _plot, run.path, settings.formats, next(iter(results.attrs["settings"])))
        summary = {"run_dir": run_dir.name,
                   "seeds": {section: getattr(run_config, section).seed for section in SEEDED_SECTIONS},
                   **summarize(run, results, table), "analysed_epochs": epochs}
    summary["timings_s"] = {**stage.seconds, "total": round(time.perf_counter() - began, 2)}
    summary["files"] = {"figures": sorted(str(path.relative_to(out_dir)) for path in figures)}
    return summary


def _plot(run_dir, formats, analysis_key: str) -> list[Path]:
    """Draw the run's figures of the analysis settings ``analysis_key`` unless those drawn last time
    came from the same tables.

    ``RUN_DIR/results/figures/sources.json`` records the SHA-256 of the tables each drawing used
    and the files it wrote.
    """
    import hashlib

    from mftma.atomic import atomic_write_text
    from mftma.results.table import RESULTS_CSV, results_dir
    from mftma.results.rollback import ROLLBACK_CSV
    from mftma.pipeline.figures import figures_dir, plot_run

    sources = {name: hashlib.sha256((results_dir(run_dir) / name).read_bytes()).hexdigest()
               for name in (RESULTS_CSV, ROLLBACK_CSV)}
    record_path = figures_dir(run_dir) / SOURCES_FILE
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    figures = [Path(run_dir) / name for name in record.get("figures", [])]
    if record.get("sources") == sources and record.get("formats") == list(formats) and \
            all(path.exists() for path in figures):
        return figures
    figures = plot_run(run_dir, formats=formats, settings=analysis_key)
    record = {"sources": sources, "formats": list(formats),
              "figures": [str(path.relative_to(run_dir)) for path in figures]}
    atomic_write_text(record_path, json.dumps(record, indent=2))
    return figures


def summarize_runs(runs: list[dict]) -> dict:
    """Claims and rollback gains over runs (seeds), from the runs' :func:`summarize` dicts.

    Returns
    -------
    dict
        ``seeds`` (K), ``claims`` (per claim: per-seed statistics, mean, interval and verdict, see
        :func:`mftma.pipeline.verdicts.claims_over_seeds`), ``rollback[last|first]`` (the best partial
        rollback gain per seed, mean, interval, and the verdict on ``gain > 0``) and ``runs`` (the
        per-run summaries).
    """
    from mftma.pipeline.verdicts import claims_over_seeds, summarize_statistic

    gains = {direction: [None if run["rollback"][direction] is None else run["rollback"][direction]["gain"]
                         for run in runs] for direction in ("last", "first")}
    return {
        "seeds": len(runs),
        "claims": claims_over_seeds([run["claims"] for run in runs]),
        "rollback": {direction: {"test": "gain > 0", **summarize_statistic(values)}
                     for direction, values in gains.items()},
        "runs": runs,
    }


def summarize_run_dirs(run_dirs, settings=None) -> dict:
    """:func:`summarize_runs` of existing analysed run directories (``mftma claims``).

    A run without a rollback table is summarised without it (claim (d) not evaluable, no gains).

    Parameters
    ----------
    run_dirs : sequence of str or Path
    settings : str or dict, optional
        The analysis settings to use in every run (see :func:`mftma.pipeline.figures.run_results`);
        needed when a results table holds several side by side.

    Raises
    ------
    DataFileError
        A directory is not a run, or has no results table (run ``mftma analyze`` first).
    InputError
        A results table mixes several analysis settings and ``settings`` does not select one.
    """
    from mftma.experiments.run import Run
    from mftma.pipeline.rollback import load_rollback
    from mftma.pipeline.figures import run_results

    runs = []
    for run_dir in run_dirs:
        run = Run(run_dir)
        summary = summarize(run, run_results(run.path, settings), load_rollback(run.path, missing_ok=True))
        runs.append({"run_dir": str(run_dir), **summary})
    return summarize_runs(runs)


def summarize(run, results, rollback_table) -> dict:
    """Numbers of the summary: epochs, accuracies, geometry, rollback gains and claims.

    Returns
    -------
    dict
        ``best_epoch`` (the analysed epoch of highest test accuracy), ``true_best`` (see :func:`_true_best`),
        ``last_epoch``, ``test_accuracy`` (best, last), ``final_layer``,
        ``geometry[layer][best|last][subset][metric]`` for the input and the final analysed layer,
        ``rollback[last|first]`` (largest test-accuracy gain over partial rollbacks, 1 <= k < L,
        with its k and epoch) and ``claims`` (see :func:`mftma.pipeline.claims.evaluate_claims`).
    """
    from mftma.pipeline.claims import evaluate_claims
    from mftma.pipeline.figures import analysed_best_epoch
    from mftma.pipeline.rollback import best_partial_gain
    from mftma.results.selections import layer_order

    metrics = run.metrics().set_index("epoch")
    best = analysed_best_epoch(metrics.reset_index(), results)
    last = int(results["epoch"].max())
    final_layer = layer_order(results)[-1]
    return {
        "best_epoch": best,
        "true_best": _true_best(run, metrics, best),
        "last_epoch": last,
        "test_accuracy": {"best": float(metrics.loc[best, "acc_test"]), "last": float(metrics.loc[last, "acc_test"])},
        "final_layer": final_layer,
        "geometry": {layer: {name: _geometry(results, layer, epoch) for name, epoch in (("best", best), ("last", last))}
                     for layer in ("input", final_layer)},
        "rollback": {direction: best_partial_gain(rollback_table, direction) for direction in ("last", "first")},
        "claims": evaluate_claims(results, rollback_table, best, last),
    }


def _true_best(run, metrics, analysed_best: int) -> dict:
    """The epoch of highest test accuracy over all trained epochs, and how far the analysed best is from it.

    ``epoch``, ``test_accuracy``, ``checkpointed`` (False only for runs trained before the best checkpoint
    was kept), ``analysed_minus_true_epochs`` and ``test_accuracy_gap`` (true best's test accuracy minus the
    analysed best's, >= 0; both 0 when the true best was analysed).
    """
    true_best = run.true_best_epoch()
    accuracy = metrics["acc_test"]
    return {"epoch": true_best, "test_accuracy": float(accuracy[true_best]),
            "checkpointed": run.best_epoch_is_checkpointed(),
            "analysed_minus_true_epochs": analysed_best - true_best,
            "test_accuracy_gap": round(float(accuracy[true_best] - accuracy[analysed_best]), 6)}


def _geometry(results, layer: str, epoch: int) -> dict:
    rows = results[(results["layer"] == layer) & (results["epoch"] == epoch)
                   & results["metric"].isin(SUMMARY_METRICS)]
    return {subset: {row.metric: round(float(row.value), 6) for row in group.itertuples()}
            for subset, group in rows.groupby("subset", sort=False)}
