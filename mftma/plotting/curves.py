"""Training curves per subset from a run's per-epoch metrics."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from mftma.errors import InputError
from mftma.plotting.style import PAPER_WIDTH, paper_style, subset_color

_ACCURACY_PREFIX = "acc_"
#: Curve names of metrics columns whose name is not ``acc_<subset>``/``loss_<subset>``.
_CURVE_NAMES = {"loss": "train", "acc_permuted_true": "restored", "acc_train": "train"}
_TRAIN_COLOR = "0.25"


def _curve_name(column: str) -> str:
    """Subset a metrics column describes: ``acc_test`` -> ``test``, ``acc_permuted_true`` -> ``restored``."""
    return _CURVE_NAMES.get(column, column.removeprefix(_ACCURACY_PREFIX).removeprefix("loss_"))


def _epoch_indexed(metrics: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(metrics, pd.DataFrame):
        raise InputError(f"metrics must be a pandas DataFrame, got {type(metrics).__name__}")
    return metrics.set_index("epoch") if "epoch" in metrics.columns else metrics


def training_curves(metrics, best_epoch: int | None = None):
    """Loss and per-subset accuracy across epochs.

    Parameters
    ----------
    metrics : pandas.DataFrame
        One row per epoch (an ``epoch`` column or index) with ``acc_<subset>``
        accuracy columns in [0, 1] (e.g. ``acc_unpermuted``, ``acc_permuted`` against
        training labels, ``acc_permuted_true`` drawn as ``restored``, ``acc_test``) and
        optionally ``loss`` (training) and ``loss_<subset>`` columns.
    best_epoch : int, optional
        Epoch marked with a dashed vertical line.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels (loss, accuracy) or one (accuracy) when there is no loss column, and one legend of
        all curves below the panels, where it covers none of them.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"epoch": [0, 1, 2], "loss": [2.3, 1.0, 0.5],
    ...                       "acc_test": [0.1, 0.6, 0.7], "acc_permuted": [0.1, 0.1, 0.4]})
    >>> fig = training_curves(frame, best_epoch=2)
    >>> loss, accuracy = fig.axes
    >>> {line.get_label(): line.get_ydata().tolist() for line in accuracy.lines[:-1]}
    {'test': [0.1, 0.6, 0.7], 'permuted': [0.1, 0.1, 0.4]}
    >>> loss.lines[0].get_ydata().tolist(), accuracy.lines[-1].get_label()
    ([2.3, 1.0, 0.5], 'best epoch (2)')
    """
    metrics = _epoch_indexed(metrics).sort_index()
    accuracy = [column for column in metrics.columns if column.startswith(_ACCURACY_PREFIX)]
    losses = [column for column in metrics.columns if column == "loss" or column.startswith("loss_")]
    if not accuracy:
        raise InputError(f"metrics has no '{_ACCURACY_PREFIX}<subset>' columns; it has {list(metrics.columns)}")
    panels = [("loss", losses)] * bool(losses) + [("accuracy", accuracy)]
    with paper_style():
        fig, axes = plt.subplots(1, len(panels), figsize=(PAPER_WIDTH, 2.6), layout="constrained", squeeze=False)
        for ax, (ylabel, columns) in zip(axes[0], panels):
            for column in columns:
                name = _curve_name(column)
                ax.plot(metrics.index, metrics[column], color=subset_color(name) or _TRAIN_COLOR, label=name)
            if best_epoch is not None:
                ax.axvline(best_epoch, color="0.4", linestyle="--", linewidth=1.0, label=f"best epoch ({best_epoch})")
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        handles = {}
        for ax in axes[0]:
            handles.update(zip(*reversed(ax.get_legend_handles_labels())))
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=len(handles), frameon=False)
        fig.suptitle("Training curves (permuted: against training labels; restored: against true labels)")
    return fig
