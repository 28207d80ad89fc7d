"""Figure of the noise-detection table (:mod:`mftma.pipeline.detect_noise`): ROC-AUC and precision vs epoch."""
from __future__ import annotations

import matplotlib.pyplot as plt

from mftma.names import NOISE_SIGNALS
from mftma.plotting.style import PAPER_WIDTH, paper_style


def detection_curves(table):
    """Two panels over epochs, one line per signal: ROC-AUC (chance 0.5) and precision at epsilon (chance epsilon).

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`mftma.pipeline.detect_noise.detection_table`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    epsilon = float(table["epsilon"].iloc[0])
    with paper_style():
        fig, axes = plt.subplots(1, 2, figsize=(PAPER_WIDTH, 3.3), sharex=True, layout="constrained")
        for ax, column, chance, label in ((axes[0], "roc_auc", 0.5, "ROC-AUC"),
                                           (axes[1], "precision_at_eps", epsilon, f"precision at $\\epsilon$ = {epsilon:.2f}")):
            for signal in [name for name in NOISE_SIGNALS if name in set(table["signal"])]:
                rows = table[table["signal"] == signal].sort_values("epoch")
                ax.plot(rows["epoch"], rows[column], label=signal.replace("_", " "))
            ax.axhline(chance, color="0.5", linestyle=":", linewidth=1, label="chance")
            ax.set(xlabel="epoch", ylabel=label, ylim=(0, 1.02))
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=4, frameon=False)
        fig.suptitle("finding the permuted training examples from per-example training signals")
    return fig
