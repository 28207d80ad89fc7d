"""Layer profiles at chosen epochs with all subsets on one axis (ICLR 2021 Fig. 3 layout)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from mftma.plotting.style import PAPER_WIDTH, metric_label, ordered_subsets, paper_style, subset_color
from mftma.results.selections import check_results, layer_order, layer_profile, metric_values

#: Rows of the profile figure.
PROFILE_METRICS = ("capacity", "radius", "dimension")


def layer_profiles(results, epochs: dict, metrics=PROFILE_METRICS, subsets=None):
    """Metric-versus-layer curves, one row per metric and one column per epoch.

    Parameters
    ----------
    results : pandas.DataFrame
        Tidy results table of one run.
    epochs : dict
        Column title -> epoch, e.g. ``{"best epoch": 12, "last epoch": 60}``.
    metrics : sequence of str
        Metrics drawn in the rows (default capacity, radius, dimension).
    subsets : sequence of str, optional
        Subsets drawn as lines (default: all present, canonical order).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"run": "r", "epoch": 0, "layer": ["input", "fc1"], "layer_index": [0, 1],
    ...                       "subset": "test", "metric": "capacity", "value": [0.04, 0.05]})
    >>> fig = layer_profiles(table, {"init": 0}, metrics=["capacity"])
    >>> ax = fig.axes[0]
    >>> ax.get_title(), [label.get_text() for label in ax.get_xticklabels()]
    ('init = 0', ['input', 'fc1'])
    >>> [(line.get_label(), line.get_ydata().tolist()) for line in ax.lines]
    [('test', [0.04, 0.05])]
    """
    results = check_results(results)
    layers = layer_order(results)
    with paper_style():
        fig, axes = plt.subplots(len(metrics), len(epochs), figsize=(PAPER_WIDTH, 1.9 * len(metrics) + 0.6),
                                 sharex=True, sharey="row", layout="constrained", squeeze=False)
        for row, metric in enumerate(metrics):
            present = metric_values(results, metric)["subset"].unique()
            for col, (title, epoch) in enumerate(epochs.items()):
                ax = axes[row, col]
                for subset in ordered_subsets(present) if subsets is None else subsets:
                    profile = layer_profile(results, metric, subset, epoch).reindex(layers)
                    ax.plot(np.arange(len(layers)), profile.to_numpy(dtype=float), marker="o", markersize=3,
                            color=subset_color(subset), label=subset)
                if row == 0:
                    ax.set_title(f"{title} = {epoch}")
                if col == 0:
                    ax.set_ylabel(metric_label(metric))
                ax.grid(alpha=0.3)
        for ax in axes[-1]:
            ax.set_xticks(np.arange(len(layers)), layers, rotation=45, ha="right", rotation_mode="anchor")
            ax.set_xlabel("layer")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), frameon=False)
    return fig
