"""k x e heatmaps of a layer-rollback table (see :mod:`mftma.pipeline.rollback`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize

from mftma.errors import InputError
from mftma.plotting.style import PAPER_WIDTH, ordered_subsets, paper_style
from mftma.results.selections import require_columns

ROLLBACK_COLUMNS = ("direction", "k", "epoch", "subset", "metric", "value")
_DIRECTION_TITLES = {"last": "last k layers", "first": "first k layers (control)"}
#: Cells are annotated with their value when a panel has at most this many k columns.
_ANNOTATE_MAX_COLUMNS = 6


def _gain_grid(rows):
    """Epoch x k (k >= 1) frame of accuracy change (percentage points) against the final model (k = 0)."""
    grid = rows.pivot(index="epoch", columns="k", values="value").sort_index().sort_index(axis=1)
    if 0 not in grid.columns:
        raise InputError("rollback table lacks k = 0 (the final model), the reference of the gains")
    return 100.0 * grid.sub(grid[0], axis=0).drop(columns=0)


def rollback_heatmaps(table, subsets=None):
    """Change of accuracy after rolling back k layers to epoch e, per direction and subset.

    Each panel is an epoch (rows) x k >= 1 (columns) map of the accuracy minus the
    final model's (k = 0) accuracy, in percentage points, on a diverging colour scale
    centred at 0 (red: rollback raised the accuracy). Cells are annotated when few.

    Parameters
    ----------
    table : pandas.DataFrame
        Rollback table with columns direction, k, epoch, subset, metric, value
        (accuracy rows have ``metric == "accuracy"``).
    subsets : sequence of str, optional
        Columns of the figure (default: every subset present, canonical order).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"direction": "last", "k": [0, 1, 0, 1], "epoch": [3, 3, 5, 5],
    ...                       "subset": "test", "metric": "accuracy", "value": [0.6, 0.7, 0.6, 0.65]})
    >>> fig = rollback_heatmaps(table)
    >>> ax = fig.axes[0]
    >>> ax.get_title(), [label.get_text() for label in ax.get_yticklabels()]
    ('test', ['3', '5'])
    >>> ax.images[0].get_array().round(6).tolist(), [text.get_text() for text in ax.texts]  # points vs k = 0
    ([[10.0], [5.0]], ['+10', '+5'])
    """
    require_columns(table, ROLLBACK_COLUMNS, "rollback table")
    accuracy = table[table["metric"] == "accuracy"]
    if accuracy.empty:
        raise InputError("rollback table has no accuracy rows; run `mftma rollback RUN_DIR` first")
    directions = [d for d in _DIRECTION_TITLES if d in set(accuracy["direction"])]
    subsets = ordered_subsets(accuracy["subset"].unique()) if subsets is None else list(subsets)
    grids = {(d, s): _gain_grid(accuracy[(accuracy["direction"] == d) & (accuracy["subset"] == s)])
             for d in directions for s in subsets}
    with paper_style():
        fig, axes = plt.subplots(len(directions), len(subsets), figsize=(PAPER_WIDTH, 2.0 * len(directions) + 1.0),
                                 layout="constrained", squeeze=False)
        for col, subset in enumerate(subsets):
            limit = max(np.nanmax(np.abs(grids[d, subset].to_numpy())) for d in directions) or 1.0
            norm = Normalize(-limit, limit)
            for row, direction in enumerate(directions):
                image = _draw(axes[row, col], grids[direction, subset], norm)
                if col == 0:
                    axes[row, col].set_ylabel(f"{_DIRECTION_TITLES[direction]}\nrolled back to epoch e")
            axes[0, col].set_title(subset)
            fig.colorbar(image, ax=axes[:, col], location="bottom", shrink=0.9, label="$\\Delta$ accuracy (points)")
        fig.suptitle("Layer rollback: accuracy change against the final model")
    return fig


def _draw(ax, grid, norm):
    values = grid.to_numpy(dtype=float)
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest")
    ax.set_xticks(np.arange(grid.shape[1]), [str(k) for k in grid.columns])
    ax.set_yticks(np.arange(grid.shape[0]), [str(e) for e in grid.index])
    ax.set_xlabel("k (layers rolled back)")
    if grid.shape[1] <= _ANNOTATE_MAX_COLUMNS:
        for (row, col), value in np.ndenumerate(values):
            if np.isfinite(value):
                shade = "white" if abs(value) > 0.6 * norm.vmax else "black"
                ax.text(col, row, f"{round(value):+d}", ha="center", va="center", fontsize=8, color=shade)
    return image
