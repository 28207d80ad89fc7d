"""Epoch x layer heatmaps of a metric per subset, and difference maps between subsets."""
from __future__ import annotations

import matplotlib.patheffects as path_effects
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from mftma.errors import InputError
from mftma.plotting.style import PAPER_WIDTH, metric_label, ordered_subsets, paper_style
from mftma.results.selections import check_results, epoch_layer_grid, metric_values

#: Pairs (subset, reference) drawn by :func:`difference_maps`, as ``subset - reference``.
DIFFERENCE_PAIRS = (("permuted", "unpermuted"), ("restored", "unpermuted"))

#: Values more than this many interquartile ranges outside the quartiles are far outliers (Tukey): they are
#: left out of the colour scale, so that one outlier cannot compress the other cells into one colour.
OUTLIER_IQR = 3.0
#: Label of the hatching that marks cells outside the colour scale.
OUTSIDE_LABEL = f"beyond the colour scale (far outlier: over {OUTLIER_IQR:g} IQR outside the quartiles)"

_MAX_TICKS = 10
#: The best-epoch line: black with a white edge, visible on dark, light and white (diverging centre) cells.
_BEST_LINE = {"color": "black", "linestyle": "--", "linewidth": 1.0,
              "path_effects": [path_effects.Stroke(linewidth=2.6, foreground="white"), path_effects.Normal()]}
#: Cells outside the colour scale: black outline, white hatching (visible on dark and light cells).
_OUTSIDE_STYLE = {"fill": False, "hatch": "////", "edgecolor": "black", "hatchcolor": "white", "linewidth": 0.8}


def _ticks(labels) -> tuple[np.ndarray, list[str]]:
    """At most ``_MAX_TICKS`` evenly spread tick positions with their labels."""
    positions = np.unique(np.linspace(0, len(labels) - 1, min(len(labels), _MAX_TICKS)).round().astype(int))
    return positions, [str(labels[i]) for i in positions]


def _draw_grid(ax, grid, norm, cmap, best_epoch=None):
    """Draw an epoch x layer frame as an image with labelled ticks, hatching the cells outside ``norm``.

    The best epoch, when given and present, is a dashed line labelled ``best epoch (<e>)``. Returns the image.
    """
    colormap = plt.get_cmap(cmap).with_extremes(bad="0.85")
    values = grid.to_numpy(dtype=float)
    image = ax.imshow(
        np.ma.masked_invalid(values), origin="lower", aspect="auto",
        cmap=colormap, norm=norm, interpolation="nearest",
    )
    for row, col in zip(*np.nonzero(_outside(values, norm))):
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, **_OUTSIDE_STYLE, label=OUTSIDE_LABEL))
    xpos, xlabels = _ticks(list(grid.columns))
    ax.set_xticks(xpos, xlabels, rotation=45, ha="right", rotation_mode="anchor")
    ypos, ylabels = _ticks(list(grid.index))
    ax.set_yticks(ypos, ylabels)
    ax.set_xlabel("layer")
    if best_epoch is not None and best_epoch in grid.index:
        row = list(grid.index).index(best_epoch)
        ax.axhline(row, **_BEST_LINE, label=_best_label(best_epoch))
    return image


def _best_label(epoch: int) -> str:
    return f"best epoch ({epoch})"


def _outside(values: np.ndarray, norm: Normalize) -> np.ndarray:
    """Mask of the finite cells below ``norm.vmin`` or above ``norm.vmax``."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & ((values < norm.vmin) | (values > norm.vmax))


def _legend_and_colorbar(fig, axes, image, grids, label: str, best_epoch) -> None:
    """Colorbar (with arrows for values beyond the scale) and a legend below the panels for the marks."""
    values = np.concatenate([grid.to_numpy(dtype=float).ravel() for grid in grids])
    values = values[np.isfinite(values)]
    below, above = bool((values < image.norm.vmin).any()), bool((values > image.norm.vmax).any())
    extend = ("neither", "min", "max", "both")[below + 2 * above]
    fig.colorbar(image, ax=list(axes), label=label, shrink=0.9, extend=extend)
    handles = []
    if best_epoch is not None and any(best_epoch in grid.index for grid in grids):
        handles.append(Line2D([], [], **_BEST_LINE, label=_best_label(best_epoch)))
    if below or above:
        handles.append(Patch(**{**_OUTSIDE_STYLE, "hatchcolor": "black"}, label=OUTSIDE_LABEL))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


def _panel_figure(n_panels: int, n_layers: int):
    height = 2.2 + 0.04 * n_layers
    fig, axes = plt.subplots(1, n_panels, figsize=(PAPER_WIDTH, height), sharey=True, layout="constrained",
                             squeeze=False)
    return fig, axes[0]


def metric_heatmaps(results, metric: str, subsets=None, best_epoch: int | None = None, cmap: str = "viridis"):
    """Epoch x layer heatmaps of ``metric``, one panel per subset, on one colour scale.

    Parameters
    ----------
    results : pandas.DataFrame
        Tidy results table of one run (columns epoch, layer, layer_index, subset, metric, value).
    metric : str
        Metric to draw, e.g. ``"capacity"``.
    subsets : sequence of str, optional
        Subsets to draw (default: all present for ``metric``, in canonical order).
    best_epoch : int, optional
        Epoch marked with a labelled dashed line (e.g. the epoch of best test accuracy).
    cmap : str
        Sequential colormap.

    Notes
    -----
    The colour scale spans the finite values of all panels except far outliers (:data:`OUTLIER_IQR`), so a
    single outlier does not compress the other cells into one colour; the images hold the exact values,
    and cells outside the scale are hatched (and named in the legend below the panels).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"run": "r", "epoch": [0, 0, 1, 1], "layer": ["input", "fc1"] * 2,
    ...                       "layer_index": [0, 1] * 2, "subset": "test", "metric": "capacity",
    ...                       "value": [0.04, 0.05, 0.04, 0.07]})
    >>> fig = metric_heatmaps(table, "capacity")
    >>> panel, colorbar = fig.axes
    >>> panel.get_title(), [label.get_text() for label in panel.get_xticklabels()], colorbar.get_ylabel()
    ('test', ['input', 'fc1'], 'capacity $\\\\alpha_M$')
    >>> panel.images[0].get_array().tolist()  # rows: epochs 0, 1; columns: layers
    [[0.04, 0.05], [0.04, 0.07]]
    """
    results = check_results(results)
    rows = metric_values(results, metric)
    subsets = ordered_subsets(rows["subset"].unique()) if subsets is None else list(subsets)
    grids = [epoch_layer_grid(results, metric, subset) for subset in subsets]
    norm = Normalize(*_robust_range(grids))
    with paper_style():
        fig, axes = _panel_figure(len(grids), grids[0].shape[1])
        for ax, subset, grid in zip(axes, subsets, grids):
            image = _draw_grid(ax, grid, norm, cmap, best_epoch)
            ax.set_title(subset)
        axes[0].set_ylabel("epoch")
        _legend_and_colorbar(fig, axes, image, grids, metric_label(metric), best_epoch)
        fig.suptitle(f"{metric_label(metric)} across epochs and layers")
    return fig


def difference_maps(results, metric: str, pairs=DIFFERENCE_PAIRS, best_epoch: int | None = None):
    """Epoch x layer maps of ``metric(subset) - metric(reference)`` for each available pair.

    The diverging colormap is centred at 0 with limits symmetric around it, so
    equal colours mean equal differences in both directions; the limit is the
    largest absolute difference that is not a far outlier (:data:`OUTLIER_IQR`), and
    cells beyond it are hatched.

    Parameters
    ----------
    results : pandas.DataFrame
        Tidy results table of one run.
    metric : str
        Metric to compare.
    pairs : sequence of (str, str)
        ``(subset, reference)`` pairs; pairs whose subsets are absent are skipped.
    best_epoch : int, optional
        Epoch marked with a labelled dashed line.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        If no pair has both subsets in the table.
    """
    results = check_results(results)
    present = set(metric_values(results, metric)["subset"])
    pairs = [(subset, reference) for subset, reference in pairs if {subset, reference} <= present]
    if not pairs:
        raise InputError(f"no subset pair of {list(DIFFERENCE_PAIRS)} is present for {metric!r}: {sorted(present)}")
    grids = [
        epoch_layer_grid(results, metric, subset) - epoch_layer_grid(results, metric, reference)
        for subset, reference in pairs
    ]
    _, limit = _robust_range([grid.abs() for grid in grids])
    norm = Normalize(-(limit or 1.0), limit or 1.0)
    with paper_style():
        fig, axes = _panel_figure(len(grids), grids[0].shape[1])
        for ax, (subset, reference), grid in zip(axes, pairs, grids):
            image = _draw_grid(ax, grid, norm, "RdBu_r", best_epoch)
            ax.set_title(f"{subset} $-$ {reference}")
        axes[0].set_ylabel("epoch")
        _legend_and_colorbar(fig, axes, image, grids, f"$\\Delta$ {metric_label(metric)}", best_epoch)
        fig.suptitle(f"Difference in {metric_label(metric)} between subsets")
    return fig


def _robust_range(grids) -> tuple[float, float]:
    """Smallest and largest finite value over all grids that is not a far outlier (0, 1 when there are none).

    Far outliers lie more than :data:`OUTLIER_IQR` interquartile ranges below the first or above the third
    quartile; with a zero interquartile range no value is an outlier.

    Examples
    --------
    >>> import pandas as pd
    >>> _robust_range([pd.DataFrame([[1.0, 2.0, 3.0, 4.0, 5.0, 1e6]])])
    (1.0, 5.0)
    """
    values = np.concatenate([grid.to_numpy(dtype=float).ravel() for grid in grids])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    q1, q3 = np.percentile(values, [25, 75])
    spread = OUTLIER_IQR * (q3 - q1)
    inliers = values if spread == 0 else values[(values >= q1 - spread) & (values <= q3 + spread)]
    return float(inliers.min()), float(inliers.max())
