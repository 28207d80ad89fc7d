"""Geometry and probe accuracy per layer of cascading and independently randomized networks.

Reads EXPERIMENT_DIR/randomization.csv and randomization_accuracy.csv (`mftma flawed randomize`); writes
randomization.png/.pdf and randomization.json.
"""
from __future__ import annotations

import _flawed

METRICS = ("capacity", "radius", "dimension", "probe_accuracy")


def figure(table, accuracy):
    """Rows: cascading and independent randomization; columns: metrics against the layer; the trained
    network in black in every panel, each variant's test accuracy in the legend."""
    import matplotlib.pyplot as plt
    import numpy as np

    from mftma.plotting.style import PAPER_WIDTH, metric_label, paper_style

    metrics = [metric for metric in METRICS if metric in set(table["metric"])]
    layers = table.sort_values("layer_index")["layer"].unique()
    test_accuracy = accuracy.set_index("variant")["acc_test"]
    with paper_style():
        fig, axes = plt.subplots(2, len(metrics), figsize=(PAPER_WIDTH, 4.8), layout="constrained", sharex=True,
                                 sharey="col", squeeze=False)
        for row, mode in enumerate(("cascade", "independent")):
            variants = ["trained", *table.loc[table["mode"] == mode, "variant"].unique()]
            colors = plt.get_cmap("plasma")(np.linspace(0.0, 0.85, len(variants) - 1))
            for col, metric in enumerate(metrics):
                ax = axes[row, col]
                for variant, color in zip(variants, ["black", *colors]):
                    rows = table[(table["variant"] == variant) & (table["metric"] == metric)]
                    profile = rows.set_index("layer")["value"].reindex(layers)
                    ax.plot(np.arange(len(layers)), profile.to_numpy(), color=color, marker="o", markersize=2.5,
                            label=f"{_short(variant)} ({test_accuracy[variant]:.2f})")
                ax.grid(alpha=0.3)
                if row == 0:
                    ax.set_title(metric_label(metric))
            axes[row, 0].set_ylabel(f"{mode} randomization")
            axes[row, -1].legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5),
                                 title="variant (test acc.)")
        for ax in axes[-1]:
            ax.set_xticks(np.arange(len(layers)), layers, rotation=45, ha="right", rotation_mode="anchor")
    return fig


def _short(variant: str) -> str:
    """``cascade_2`` -> ``top 2 random``; ``independent_conv1`` -> ``conv1 random``."""
    if variant.startswith("cascade_"):
        return f"top {variant.removeprefix('cascade_')} random"
    return f"{variant.removeprefix('independent_')} random" if variant.startswith("independent_") else variant


def numbers(table, accuracy) -> dict:
    """Test accuracy of every variant and each metric per layer."""
    profiles = table.pivot_table("value", ["variant", "metric"], "layer_index")
    return {"test_accuracy": _flawed.rounded(dict(accuracy.set_index("variant")["acc_test"].items())),
            "layers": list(table.sort_values("layer_index")["layer"].unique()),
            "profiles": {f"{variant}/{metric}": _flawed.rounded(list(row.dropna()))
                         for (variant, metric), row in profiles.iterrows()}}


def run() -> None:
    args = _flawed.parser(__doc__).parse_args()
    table, accuracy = _flawed.table(args, "randomization"), _flawed.table(args, "randomization_accuracy")
    _flawed.save(figure(table, accuracy), args, "randomization", numbers(table, accuracy))


if __name__ == "__main__":
    _flawed.main(run)
