"""Streaming analysis: cache one checkpoint, analyse it, drop its features, then the next checkpoint.

At the paper's scale the activation cache of every checkpoint does not fit on disk. :func:`stream_run` keeps
at most one checkpoint's features at a time: for each epoch in turn it caches the epoch
(:func:`~mftma.cache.writer.cache_activations`), analyses all its cells (:func:`~mftma.pipeline.analyze.analyze_run`,
the same cells, settings and records as a normal analysis) and replaces the features of every layer not asked
to be kept by an empty record (:func:`~mftma.cache.writer.drop_features`). The cache stays a valid cache: the
dropped entries keep their identity, so the stored cells are reused by later analyses with the same settings,
and reading their features raises a :class:`~mftma.errors.DataFileError` naming the ``mftma cache`` command
that computes them again. New cache files reuse the space of dropped entries, so the file holds the kept
features plus about one checkpoint's.

Resumable: an epoch is finished once its cells are stored and its unkept features dropped; rerunning the same
call skips finished epochs (nothing is cached or computed for them) and redoes the epoch in progress (its
finished cache entries and cells are reused).
"""
from __future__ import annotations

import pathlib
import warnings
from collections.abc import Sequence

import pandas as pd

from mftma.errors import InputError

#: Keyword arguments of :func:`~mftma.cache.writer.cache_activations` that ``cache_options`` may set.
CACHE_OPTIONS = ("M", "P", "projection_dim", "pool", "projection", "device", "dtype")
#: The settings of :func:`~mftma.pipeline.analyze.analyze_run` that decide which cells are finished.
_PLAN_SETTINGS = ("kappa", "n_t", "n_reps", "seed", "probes", "probe_folds", "probe_C", "probe_backend")


def stream_run(run_dir, *, epochs: Sequence[int] | None = None, layers: Sequence[str] | None = None,
               subsets: Sequence[str] | None = None, keep_layers: Sequence[str] = (),
               keep_epochs: Sequence[int] = (), cache_options: dict | None = None, progress: bool = True,
               **analysis) -> pd.DataFrame:
    """Cache and analyse a run checkpoint by checkpoint, keeping only the features asked for.

    Parameters
    ----------
    run_dir : str or path-like
        A trained run directory (``mftma train``).
    epochs, layers, subsets : sequence, optional
        Checkpoint epochs, analysis layers and subsets to cache and analyse (defaults: every checkpoint and
        the run config's ``cache.layers`` and ``cache.subsets``, as ``mftma cache``).
    keep_layers : sequence of str
        Layers whose features stay in ``activations.h5`` at every epoch (default: none).
    keep_epochs : sequence of int
        Epochs whose features stay in ``activations.h5`` for every layer (default: none).
    cache_options : dict, optional
        Cache settings overriding the run config's ``cache`` section, among ``M``, ``P``,
        ``projection_dim``, ``pool``, ``projection``, ``device``, ``dtype`` (see
        :func:`~mftma.cache.writer.cache_activations`).
    progress : bool
        Show the caching and analysis progress bars.
    **analysis
        Settings of :func:`~mftma.pipeline.analyze.analyze_run` (``kappa``, ``n_t``, ``n_reps``, ``seed``,
        ``probes``, ``probe_folds``, ``probe_C``, ``probe_backend``, ``scheduler``, ``n_workers``,
        ``processes``, ``on_cell_done``).

    Returns
    -------
    pandas.DataFrame
        The rows of the requested cells under these settings, as :func:`~mftma.pipeline.analyze.analyze_run`
        returns them for the same cells; ``RUN_DIR/results`` holds the whole table.

    Raises
    ------
    InputError
        Unknown epochs, layers, subsets or cache options, or kept layers or epochs not among those streamed.
    DataFileError
        As :func:`~mftma.cache.writer.cache_activations` and :func:`~mftma.pipeline.analyze.analyze_run`.

    Warns
    -----
    UserWarning
        The existing cache file was created before files reused freed space: it does not shrink.

    Examples
    --------
    Streaming drops features, so this example works on a copy of a cached run:

    >>> import shutil, tempfile
    >>> copy = shutil.copytree(run_dir, f"{tempfile.mkdtemp()}/run")
    >>> table = stream_run(copy, epochs=[4], layers=["input", "logits"], keep_layers=["logits"], n_t=20,
    ...                    n_reps=1, probes=False, processes=False, progress=False)
    >>> sorted(table["layer"].unique()), table["epoch"].unique().tolist()
    (['input', 'logits'], [4])
    >>> from mftma.cache.reader import ActivationCache
    >>> with ActivationCache(copy) as cache:
    ...     cache.entries().query("epoch == 4").groupby("layer")["dropped"].all().to_dict()
    {'fc1': False, 'fc2': False, 'input': True, 'logits': False}
    """
    from mftma.cache.reader import CACHE_FILE
    from mftma.cache.writer import reuses_free_space, resolve_settings
    from mftma.experiments.run import Run
    from mftma.run_lock import run_directory_lock

    cache_options = _checked_cache_options(cache_options)
    run = Run(run_dir)
    run_dir = pathlib.Path(run.path)
    with run_directory_lock(run_dir, "streaming analysis"):
        settings = resolve_settings(run, epochs, layers, subsets, None, None, None, None)
        _check_subset("keep_layers", keep_layers, settings.layers)
        _check_subset("keep_epochs", keep_epochs, settings.epochs)
        if (run_dir / CACHE_FILE).exists() and not reuses_free_space(run_dir / CACHE_FILE):
            warnings.warn(f"{run_dir / CACHE_FILE} was created before cache files reused freed space: dropped "
                          "features leave the file as large as a full cache. `mftma cache --rebuild` (or moving "
                          "the file aside) before streaming gives a small file", stacklevel=2)
        parts = []
        for epoch in settings.epochs:
            keep = settings.layers if epoch in keep_epochs else tuple(keep_layers)
            step = _EpochStep(run, epoch, settings, keep, cache_options, analysis, progress)
            parts.append(step.execute())
    table = pd.concat(parts, ignore_index=True)
    table.attrs = parts[0].attrs
    return table


def _checked_cache_options(options: dict | None) -> dict:
    options = dict(options or {})
    unknown = sorted(set(options) - set(CACHE_OPTIONS))
    if unknown:
        raise InputError(f"unknown cache option(s) {unknown}; valid: {list(CACHE_OPTIONS)}")
    return {key: value for key, value in options.items() if value is not None}


def _check_subset(name: str, chosen, available) -> None:
    unknown = [value for value in chosen if value not in available]
    if unknown:
        raise InputError(f"{name} {unknown} are not among those streamed: {list(available)}")


class _EpochStep:
    """One epoch of a streaming analysis: cache (unless finished), analyse, drop the unkept features."""

    def __init__(self, run, epoch, settings, keep, cache_options, analysis, progress):
        self.run, self.epoch, self.settings, self.keep = run, epoch, settings, tuple(keep)
        self.cache_options, self.analysis, self.progress = cache_options, analysis, progress
        self.selection = {"epochs": [epoch], "layers": list(settings.layers), "subsets": list(settings.subsets)}

    def execute(self) -> pd.DataFrame:
        from mftma.cache.reader import CACHE_FILE
        from mftma.cache.writer import cache_activations, drop_features
        from mftma.pipeline.analyze import analyze_run

        if not self._finished():
            cache_activations(self.run, **self.selection, progress=self.progress, **self.cache_options)
        table = analyze_run(self.run.path, **self.selection, progress=self.progress, **self.analysis)
        dropped = [layer for layer in self.settings.layers if layer not in self.keep]
        drop_features(pathlib.Path(self.run.path) / CACHE_FILE, self.epoch, dropped)
        return table

    def _finished(self) -> bool:
        """Whether every cell of the epoch is stored under these settings and the kept features are present."""
        from mftma.cache.reader import CACHE_FILE, ActivationCache
        from mftma.pipeline.analyze import unfinished_cells

        path = pathlib.Path(self.run.path) / CACHE_FILE
        if not path.exists():
            return False
        with ActivationCache(path) as cache:
            entries = cache.entries()
        entries = entries[(entries["epoch"] == self.epoch) & entries["complete"]]
        present = set(zip(entries["layer"], entries["subset"]))
        missing_kept = entries[entries["layer"].isin(self.keep) & entries["dropped"]]
        wanted = {(layer, subset) for layer in self.settings.layers for subset in self.settings.subsets}
        if not wanted <= present or not missing_kept.empty:
            return False
        analysis = {key: value for key, value in self.analysis.items() if key in _PLAN_SETTINGS}
        return not unfinished_cells(self.run.path, **self.selection, **analysis)

