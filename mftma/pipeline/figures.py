"""All figures of one run directory, written to ``RUN_DIR/results/figures``."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from mftma.errors import InputError
from mftma.results.table import DIAGNOSTIC_METRICS, FLAG_METRICS, METRICS, results_dir
from mftma.plotting.curves import training_curves
from mftma.pipeline.embedding import cache_embedding
from mftma.plotting.heatmaps import DIFFERENCE_PAIRS, difference_maps, metric_heatmaps
from mftma.plotting.profiles import PROFILE_METRICS, layer_profiles
from mftma.plotting.rollback import rollback_heatmaps
from mftma.plotting.style import save_figure

FIGURES_DIRNAME = "figures"


def figures_dir(run_dir) -> Path:
    """``RUN_DIR/results/figures``."""
    return results_dir(run_dir) / FIGURES_DIRNAME


def best_epoch(metrics, candidates, what: str = "analysed") -> int:
    """Epoch of ``candidates`` with the highest test accuracy (the earliest on ties).

    Parameters
    ----------
    metrics : pandas.DataFrame
        Per-epoch metrics of the run with ``epoch`` and ``acc_test`` columns.
    candidates : iterable of int
        The epochs to choose from (e.g. the analysed or the cached ones).
    what : str
        What the candidates are, for the error message.
    """
    accuracy = metrics.set_index("epoch")["acc_test"]
    epochs = sorted(set(candidates) & set(accuracy.index))
    if not epochs:
        raise InputError(f"no {what} epoch has a test accuracy in the run's metrics")
    return int(accuracy.loc[epochs].idxmax())


def analysed_best_epoch(metrics, results) -> int:
    """Analysed epoch (an epoch of the results table) with the highest test accuracy (the earliest on ties)."""
    return best_epoch(metrics, results["epoch"])


def check_metrics(results, metrics) -> list[str]:
    """``metrics`` after checking each is in ``results``.

    The default is every metric of ``results`` in table order, except the flags of
    :data:`~mftma.results.table.FLAG_METRICS` (e.g. ``warned_manifolds``) and the estimator's diagnostics
    of :data:`~mftma.results.table.DIAGNOSTIC_METRICS` (e.g. ``K``), which can be asked for by name.

    Raises
    ------
    InputError
        Naming the metrics that are not in the table and listing those that are.
    """
    present = list(dict.fromkeys(results["metric"]))
    if metrics is None:
        return [metric for metric in present if metric not in FLAG_METRICS + DIAGNOSTIC_METRICS]
    missing = [metric for metric in metrics if metric not in present]
    if missing:
        unknown = [metric for metric in missing if metric not in METRICS]
        detail = f" ({unknown} not a metric of mftma: {list(METRICS)})" if unknown else ""
        raise InputError(f"metric(s) {missing} are not in the run's results{detail}; analysed metrics: {present}")
    return list(dict.fromkeys(metrics))


def _has_pair(results, metric) -> bool:
    subsets = set(results.loc[results["metric"] == metric, "subset"])
    return any({subset, reference} <= subsets for subset, reference in DIFFERENCE_PAIRS)


def run_results(run_dir, settings=None):
    """The results table of ``run_dir`` to draw: all of it, or the rows of one analysis settings.

    Parameters
    ----------
    settings : str or dict, optional
        A settings key, or settings values such as ``{"n_t": 100}``
        (see :func:`mftma.results.table.select_settings`).

    Raises
    ------
    InputError
        The selection matches no or several settings, or (without a selection) the table mixes
        several settings.
    """
    from mftma.results.table import load_results, select_settings, single_settings

    results = load_results(run_dir)
    if settings is not None:
        results = select_settings(results, settings) if isinstance(settings, str) else \
            select_settings(results, **settings)
    single_settings(results)
    return results


def run_figures(run_dir, settings=None, metrics=None):
    """Yield ``(name, figure)`` for every figure the run's tables support.

    ``settings`` selects the analysis settings to draw (:func:`run_results`); a table that mixes
    several is refused.

    Heatmaps of each metric (``heatmap_<metric>``), difference maps of each metric analysed for a
    subset pair (``difference_<metric>``), the layer profiles at the best and last analysed epochs
    (``layer_profiles``), the training curves (``training_curves``), when ``mftma rollback`` was
    run, the rollback heatmaps (``rollback``), and when the activation cache is present, the 2-D view
    of the penultimate cached layer at a few epochs (``embedding_<layer>``, see
    :mod:`mftma.plotting.embedding`). Figures are built one at a time so that callers can close each
    after saving it.

    Parameters
    ----------
    run_dir : str or Path
        An analysed run directory.
    metrics : sequence of str, optional
        Metrics drawn as heatmaps, difference maps and profiles (default: all analysed); checked by
        :func:`check_metrics` before any figure is drawn.
    """
    from mftma.cache.reader import CACHE_FILE
    from mftma.experiments.run import Run
    from mftma.results.rollback import load_rollback

    run = Run(run_dir)
    results, run_metrics = run_results(run.path, settings), run.metrics()
    present = check_metrics(results, metrics)
    best, last = analysed_best_epoch(run_metrics, results), int(results["epoch"].max())
    yield "training_curves", training_curves(run_metrics, best_epoch=best)
    for metric in present:
        yield f"heatmap_{metric}", metric_heatmaps(results, metric, best_epoch=best)
    for metric in (m for m in present if _has_pair(results, m)):
        yield f"difference_{metric}", difference_maps(results, metric, best_epoch=best)
    profile_metrics = [metric for metric in PROFILE_METRICS if metric in present]
    if profile_metrics:
        yield "layer_profiles", layer_profiles(results, {"best epoch": best, "last epoch": last}, profile_metrics)
    rollback = load_rollback(run.path, missing_ok=True)
    if not rollback.empty:
        yield "rollback", rollback_heatmaps(rollback)
    if (run.path / CACHE_FILE).exists():
        yield _cache_embedding(run.path / CACHE_FILE, run_metrics)


def _cache_embedding(cache_path, run_metrics):
    """``("embedding_<layer>", figure)`` of the penultimate cached layer at the default epochs."""
    from mftma.cache.reader import ActivationCache

    with ActivationCache(cache_path) as cache:
        cached = cache.epochs
    layer, figure = cache_embedding(cache_path, best_epoch=best_epoch(run_metrics, cached, "cached"))
    return f"embedding_{layer}", figure


def plot_run(run_dir, out_dir=None, formats=("png", "pdf"), progress: bool = False, settings=None,
             metrics=None) -> list[Path]:
    """Write every figure of :func:`run_figures` as ``<out_dir>/<name>.<format>``.

    Parameters
    ----------
    run_dir : str or Path
        An analysed run directory (``mftma analyze`` done; ``mftma rollback`` optional).
    out_dir : str or Path, optional
        Output folder (default ``RUN_DIR/results/figures``).
    formats : sequence of str
        File formats, e.g. ``("png", "pdf")``.
    progress : bool
        Print the analysis settings drawn and each written figure.
    settings : str or dict, optional
        The analysis settings to draw, by key or values (see :func:`run_results`); needed when the
        table holds several.
    metrics : sequence of str, optional
        Metrics drawn as heatmaps, difference maps and profiles (default: all analysed).

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir = figures_dir(run_dir) if out_dir is None else Path(out_dir)
    if progress:
        from mftma.results.table import describe_settings

        results = run_results(run_dir, settings)
        print(f"drawing the results of analysis settings {describe_settings(results, results['settings'].iloc[0])}")
    written = []
    for name, figure in run_figures(run_dir, settings, metrics):
        written += save_figure(figure, out_dir / name, formats)
        plt.close(figure)
        if progress:
            print(f"wrote {out_dir / name}.{{{','.join(formats)}}}")
    return written
