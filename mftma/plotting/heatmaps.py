"""Epoch x layer heatmaps of a metric per subset, and difference maps between subsets."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize

from mftma.errors import InputError
from mftma.plotting.style import PAPER_WIDTH, metric_label, ordered_subsets, paper_style
from mftma.plotting.tables import check_results, epoch_layer_grid, metric_values

#: Pairs (subset, reference) drawn by :func:`difference_maps`, as ``subset - reference``.
DIFFERENCE_PAIRS = (("permuted", "unpermuted"), ("restored", "unpermuted"))

_MAX_TICKS = 10


def _ticks(labels) -> tuple[np.ndarray, list[str]]:
    """At most ``_MAX_TICKS`` evenly spread tick positions with their labels."""
    positions = np.unique(np.linspace(0, len(labels) - 1, min(len(labels), _MAX_TICKS)).round().astype(int))
    return positions, [str(labels[i]) for i in positions]


def _draw_grid(ax, grid, norm, cmap, best_epoch=None):
    """Draw an epoch x layer frame as an image with labelled ticks; returns the image."""
    colormap = plt.get_cmap(cmap).with_extremes(bad="0.85")
    image = ax.imshow(
        np.ma.masked_invalid(grid.to_numpy(dtype=float)), origin="lower", aspect="auto",
        cmap=colormap, norm=norm, interpolation="nearest",
    )
    xpos, xlabels = _ticks(list(grid.columns))
    ax.set_xticks(xpos, xlabels, rotation=45, ha="right", rotation_mode="anchor")
    ypos, ylabels = _ticks(list(grid.index))
    ax.set_yticks(ypos, ylabels)
    ax.set_xlabel("layer")
    if best_epoch is not None and best_epoch in grid.index:
        row = list(grid.index).index(best_epoch)
        ax.axhline(row, color="white", linestyle="--", linewidth=1.0)
    return image


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
        Epoch marked with a dashed line (e.g. the epoch of best test accuracy).
    cmap : str
        Sequential colormap.

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
    norm = Normalize(*_finite_range(grids))
    with paper_style():
        fig, axes = _panel_figure(len(grids), grids[0].shape[1])
        for ax, subset, grid in zip(axes, subsets, grids):
            image = _draw_grid(ax, grid, norm, cmap, best_epoch)
            ax.set_title(subset)
        axes[0].set_ylabel("epoch")
        fig.colorbar(image, ax=list(axes), label=metric_label(metric), shrink=0.9)
        fig.suptitle(f"{metric_label(metric)} across epochs and layers")
    return fig


def difference_maps(results, metric: str, pairs=DIFFERENCE_PAIRS, best_epoch: int | None = None):
    """Epoch x layer maps of ``metric(subset) - metric(reference)`` for each available pair.

    The diverging colormap is centred at 0 with limits symmetric around it, so
    equal colours mean equal differences in both directions.

    Parameters
    ----------
    results : pandas.DataFrame
        Tidy results table of one run.
    metric : str
        Metric to compare.
    pairs : sequence of (str, str)
        ``(subset, reference)`` pairs; pairs whose subsets are absent are skipped.
    best_epoch : int, optional
        Epoch marked with a dashed line.

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
    low, high = _finite_range(grids)
    limit = max(abs(low), abs(high)) or 1.0
    norm = Normalize(-limit, limit)
    with paper_style():
        fig, axes = _panel_figure(len(grids), grids[0].shape[1])
        for ax, (subset, reference), grid in zip(axes, pairs, grids):
            image = _draw_grid(ax, grid, norm, "RdBu_r", best_epoch)
            ax.set_title(f"{subset} $-$ {reference}")
        axes[0].set_ylabel("epoch")
        fig.colorbar(image, ax=list(axes), label=f"$\\Delta$ {metric_label(metric)}", shrink=0.9)
        fig.suptitle(f"Difference in {metric_label(metric)} between subsets")
    return fig


def _finite_range(grids) -> tuple[float, float]:
    """Smallest and largest finite value over all grids (0, 1 when there are none)."""
    values = np.concatenate([grid.to_numpy(dtype=float).ravel() for grid in grids])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    return float(values.min()), float(values.max())
