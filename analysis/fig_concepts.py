"""Held-out R² of concept regression probes per layer: generalizing, memorizing and untrained networks.

Reads EXPERIMENT_DIR/concepts.csv and concept_models.csv (`mftma flawed concepts`); writes
concepts.png/.pdf and concepts.json. Each panel averages R² over the color concepts (hue fractions) or
the texture concepts (GLCM statistics); grey dashed lines are the shuffled-target baselines.
"""
from __future__ import annotations

import _flawed

#: Lowest R² drawn: least squares with more channels than examples can go far below 0.
FLOOR = -0.5


def concept_groups(table) -> dict[str, list[str]]:
    """Concept names of the table split into color and texture concepts."""
    from mftma.experiments.concepts import COLOR_CONCEPTS, TEXTURE_CONCEPTS

    present = set(table["concept"])
    return {"color": [c for c in COLOR_CONCEPTS if c in present],
            "texture": [c for c in TEXTURE_CONCEPTS if c in present]}


def mean_r2(table, concepts: list[str]):
    """Mean R² and shuffled baseline over ``concepts``, indexed by (method, model, layer_index)."""
    rows = table[table["concept"].isin(concepts)]
    return rows.groupby(["method", "model", "layer_index"])[["r2", "baseline_r2"]].mean()


def figure(table, models):
    """Rows: probe methods; columns: color and texture concepts; one line per network."""
    import matplotlib.pyplot as plt
    import numpy as np

    from mftma.plotting.style import PAPER_WIDTH, paper_style

    groups = {name: concepts for name, concepts in concept_groups(table).items() if concepts}
    methods = list(dict.fromkeys(table["method"]))
    layers = table.sort_values("layer_index")["layer"].unique()
    networks = list(dict.fromkeys(table["model"]))
    accuracy = models.set_index("model")["acc_test"] if len(models) else {}
    colors = {"generalizing": "#0072B2", "memorizing": "#D55E00"}
    with paper_style():
        fig, axes = plt.subplots(len(methods), len(groups), figsize=(PAPER_WIDTH, 2.3 * len(methods) + 0.7),
                                 layout="constrained", sharex=True, sharey=True, squeeze=False)
        for col, (group, concepts) in enumerate(groups.items()):
            means = mean_r2(table, concepts)
            for row, method in enumerate(methods):
                ax = axes[row, col]
                for network in networks:
                    values = means.loc[(method, network)]
                    label = f"{network} (test acc. {accuracy[network]:.2f})" if network in accuracy else network
                    style = {"color": colors.get(network, "0.45"), "linestyle": "-" if network in colors else ":"}
                    ax.plot(values.index, np.maximum(values["r2"], FLOOR), marker="o", markersize=2.5,
                            label=label, **style)
                    ax.plot(values.index, np.maximum(values["baseline_r2"], FLOOR), color="0.6", linewidth=0.8,
                            linestyle="--")
                ax.axhline(0.0, color="0.3", linewidth=0.6)
                ax.set_ylim(FLOOR - 0.05, 1.0)
                ax.grid(alpha=0.3)
                ax.set_title(f"{group} concepts ({len(concepts)}), {method}")
        for ax in axes[:, 0]:
            ax.set_ylabel("held-out R² (mean over concepts)")
        for ax in axes[-1]:
            ax.set_xticks(np.arange(len(layers)), layers, rotation=45, ha="right", rotation_mode="anchor")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=2, frameon=False)
    return fig


def numbers(table, models) -> dict:
    """Mean R² per group, method and network across layers, the baselines, and the networks' accuracies."""
    result = {"layers": list(table.sort_values("layer_index")["layer"].unique()),
              "accuracy": {row.model: _flawed.rounded({"train": row.acc_train, "test": row.acc_test})
                           for row in models.itertuples()}}
    for group, concepts in concept_groups(table).items():
        means = mean_r2(table, concepts)
        for (method, network), values in means.groupby(level=[0, 1]):
            result[f"{group}/{method}/{network}"] = {"r2": _flawed.rounded(list(values["r2"])),
                                                    "baseline_r2": _flawed.rounded(list(values["baseline_r2"]))}
    return result


def run() -> None:
    args = _flawed.parser(__doc__).parse_args()
    table, models = _flawed.table(args, "concepts"), _flawed.table(args, "concept_models")
    _flawed.save(figure(table, models), args, "concepts", numbers(table, models))


if __name__ == "__main__":
    _flawed.main(run)
