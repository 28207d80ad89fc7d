"""Figure of a study's settings table: the test accuracy recovered by layer rollback against depth."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from mftma.errors import InputError
from mftma.plotting.style import PAPER_WIDTH, paper_style
from mftma.results.selections import require_columns

#: Columns of the settings table (:func:`mftma.pipeline.study.setting_summary`) the figure reads.
RECOVERY_COLUMNS = ("dataset", "architecture", "fraction", "n_blocks", "recovered_last", "recovered_last_low",
                    "recovered_last_high", "recovered_first", "recovered_first_low", "recovered_first_high")
_DIRECTIONS = {"last": ("last third of the blocks", "-", "o"), "first": ("first third", "--", "s")}
_ARCHITECTURE_COLORS = {"plain": "tab:blue", "residual": "tab:orange"}
#: The y range drawn: a fraction is divided by the accuracy lost, so settings that lost little have huge
#: intervals; those are clipped at the axes (the settings table gives them in full).
Y_LIMITS = (-1.5, 2.5)


def recovery_against_depth(settings):
    """Fraction of the lost test accuracy recovered by rolling back the last vs the first third of the blocks.

    One panel per data set and permuted fraction; x is the number of analysed blocks L, y the best gain of
    rolling back k <= ceil(L/3) blocks to the best epoch divided by the accuracy lost from best to last epoch
    (mean over seeds, bars: 95 % t interval, clipped to :data:`Y_LIMITS`). Solid lines: the last blocks;
    dashed: the first blocks; one colour per architecture, shifted slightly along x so the bars do not hide
    each other. A fraction of 1 recovers everything lost; 0 nothing.

    Parameters
    ----------
    settings : pandas.DataFrame
        A study's settings table with :data:`RECOVERY_COLUMNS`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> settings = pd.DataFrame({"dataset": "mnist1d", "architecture": "plain", "fraction": 0.4,
    ...     "n_blocks": [3, 5], "recovered_last": [0.2, 0.6], "recovered_last_low": [0.1, 0.5],
    ...     "recovered_last_high": [0.3, 0.7], "recovered_first": [0.1, 0.0], "recovered_first_low": [0.0, -0.1],
    ...     "recovered_first_high": [0.2, 0.1]})
    >>> fig = recovery_against_depth(settings)
    >>> ax = fig.axes[0]
    >>> {bars.get_label(): bars.lines[0].get_ydata().tolist() for bars in ax.containers}
    {'plain, last third of the blocks': [0.2, 0.6], 'plain, first third': [0.1, 0.0]}
    >>> ax.get_title()
    'mnist1d, ε = 0.4'
    """
    require_columns(settings, RECOVERY_COLUMNS, "study settings table")
    panels = list(settings.groupby(["dataset", "fraction"], sort=True))
    if not panels:
        raise InputError("study settings table is empty")
    with paper_style():
        fig, axes = plt.subplots(1, len(panels), figsize=(PAPER_WIDTH, 2.8), layout="constrained", sharey=True,
                                 squeeze=False)
        for ax, ((dataset, fraction), group) in zip(axes[0], panels):
            _panel(ax, group)
            ax.set_title(f"{dataset}, ε = {fraction:g}")
            ax.set_xlabel("analysed blocks L")
        axes[0, 0].set_ylabel("fraction of lost test\naccuracy recovered")
        axes[0, 0].set_ylim(*Y_LIMITS)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
        fig.suptitle("Rolling back the last vs the first third of the blocks to the best epoch")
    return fig


def _panel(ax, group) -> None:
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.axhline(1.0, color="0.6", linewidth=0.6, linestyle=":")
    architectures = sorted(group["architecture"].unique())
    for index, (architecture, rows) in enumerate(group.groupby("architecture", sort=True)):
        rows = rows.sort_values("n_blocks")
        shift = 0.12 * (index - (len(architectures) - 1) / 2)
        for direction, (label, style, marker) in _DIRECTIONS.items():
            mean = rows[f"recovered_{direction}"].to_numpy(dtype=float)
            low = rows[f"recovered_{direction}_low"].to_numpy(dtype=float)
            high = rows[f"recovered_{direction}_high"].to_numpy(dtype=float)
            errors = np.vstack([mean - low, high - mean])
            ax.errorbar(rows["n_blocks"] + shift, mean, yerr=np.where(np.isfinite(errors), errors, 0.0), capsize=2,
                        linestyle=style, marker=marker, markersize=3, color=_ARCHITECTURE_COLORS.get(architecture),
                        label=f"{architecture}, {label}")
    ax.set_xticks(sorted(group["n_blocks"].unique()))
