"""Training curves and per-layer geometry of one network under each corruption type (Zhang et al. 2017).

Reads EXPERIMENT_DIR/corruption_curves.csv and corruption_geometry.csv (`mftma flawed corruptions`);
writes corruption_types.png/.pdf and corruption_types.json. Top row: accuracy on the training set against
its (possibly random) training labels, test accuracy, training loss. Lower rows: capacity, radius and
dimension per layer at the analysed epoch (``--at``) for test examples and for the training examples
grouped by their training labels (``unpermuted``; ``permuted`` under random labels).
"""
from __future__ import annotations

import _flawed

METRICS = ("capacity", "radius", "dimension")
KIND_COLORS = {"none": "#000000", "permute": "#0072B2", "random_labels": "#D55E00", "shuffle_pixels": "#009E73",
               "random_pixels": "#CC79A7", "gaussian": "#E69F00"}


def training_subset(geometry, kind: str) -> str:
    """The subset of training examples grouped by the labels the network was trained on."""
    subsets = set(geometry.loc[geometry["kind"] == kind, "subset"])
    return "unpermuted" if "unpermuted" in subsets else "permuted"


def figure(curves, geometry, at: str):
    import matplotlib.pyplot as plt
    import numpy as np

    from mftma.plotting.style import PAPER_WIDTH, metric_label, paper_style

    kinds = list(dict.fromkeys(curves["kind"]))
    layers = geometry.sort_values("layer_index")["layer"].unique()
    chosen = geometry[geometry["at"] == at]
    with paper_style():
        fig, axes = plt.subplots(3, 3, figsize=(PAPER_WIDTH, 7.0), layout="constrained")
        for ax, (column, label) in zip(axes[0], (("acc_train", "train accuracy (training labels)"),
                                                 ("acc_test", "test accuracy"), ("loss", "training loss"))):
            for kind in kinds:
                rows = curves[curves["kind"] == kind]
                ax.plot(rows["epoch"], rows[column], color=KIND_COLORS.get(kind), label=kind)
            ax.set(xlabel="epoch", title=label)
            ax.grid(alpha=0.3)
        for row, group in ((1, "test"), (2, "train")):
            for ax, metric in zip(axes[row], METRICS):
                for kind in kinds:
                    subset = "test" if group == "test" else training_subset(chosen, kind)
                    rows = chosen[(chosen["kind"] == kind) & (chosen["subset"] == subset)
                                  & (chosen["metric"] == metric)]
                    profile = rows.set_index("layer")["value"].reindex(layers)
                    ax.plot(np.arange(len(layers)), profile.to_numpy(), color=KIND_COLORS.get(kind), marker="o",
                            markersize=2.5, label=kind)
                ax.set_title(f"{metric_label(metric)}, {group} ({at} epoch)")
                if metric == "radius":
                    ax.set_yscale("log")  # one outlying manifold must not flatten the other curves
                ax.set_xticks(np.arange(len(layers)), layers if row == 2 else [], rotation=45, ha="right",
                              rotation_mode="anchor")
                ax.grid(alpha=0.3)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), frameon=False)
    return fig


def numbers(curves, geometry, at: str) -> dict:
    """Final accuracies per kind and the per-layer geometry of test and training examples."""
    result = {"layers": list(geometry.sort_values("layer_index")["layer"].unique()), "at": at}
    chosen = geometry[geometry["at"] == at]
    for kind, rows in curves.groupby("kind", sort=False):
        last = rows.sort_values("epoch").iloc[-1]
        entry = {"epochs": int(last["epoch"]), "acc_train": _flawed.rounded(last["acc_train"]),
                 "acc_test_final": _flawed.rounded(last["acc_test"]),
                 "acc_test_best": _flawed.rounded(rows["acc_test"].max())}
        for subset in ("test", training_subset(chosen, kind)):
            table = chosen[(chosen["kind"] == kind) & (chosen["subset"] == subset)]
            profiles = table.pivot_table("value", "metric", "layer_index")
            entry[subset] = {metric: _flawed.rounded(list(profiles.loc[metric])) for metric in METRICS}
        result[kind] = entry
    return result


def run() -> None:
    parser = _flawed.parser(__doc__)
    parser.add_argument("--at", default="final", help="which analysed epoch to show (default: final)")
    args = parser.parse_args()
    curves, geometry = _flawed.table(args, "corruption_curves"), _flawed.table(args, "corruption_geometry")
    geometry["at"] = geometry["at"].astype(str)
    _flawed.save(figure(curves, geometry, args.at), args, "corruption_types", numbers(curves, geometry, args.at))


if __name__ == "__main__":
    _flawed.main(run)
