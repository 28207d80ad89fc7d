"""Model-size sweep: test accuracy against the parameter count (double descent) with final-layer geometry.

Reads EXPERIMENT_DIR/size_accuracy.csv and size_geometry.csv (`mftma flawed sizesweep`); writes
model_size.png/.pdf and model_size.json. Top: test accuracy at the best and at the last epoch (left axis)
and the final training accuracy (right axis); below: the final layer's radius R_M and dimension D_M per
subset at the last epoch (solid) and the best epoch (dashed).
"""
from __future__ import annotations

import _flawed

GEOMETRY = ("radius", "dimension")


def figure(accuracy, geometry):
    import matplotlib.pyplot as plt

    from mftma.plotting.style import PAPER_WIDTH, metric_label, ordered_subsets, paper_style, subset_color

    accuracy = accuracy.sort_values("num_parameters")
    layer = geometry["layer"].iloc[0]
    with paper_style():
        fig, axes = plt.subplots(3, 1, figsize=(PAPER_WIDTH * 0.6, 6.0), layout="constrained", sharex=True)
        top, train = axes[0], axes[0].twinx()  # test accuracy on the left, training accuracy on the right
        for column, label, style, color in (("acc_test_best", "test (best epoch)", "--", "0.5"),
                                            ("acc_test_final", "test (last epoch)", "-", "black")):
            top.plot(accuracy["num_parameters"], accuracy[column], linestyle=style, marker="o", markersize=3,
                     color=color, label=label)
        train.plot(accuracy["num_parameters"], accuracy["acc_train_final"], linestyle=":", marker="o", markersize=3,
                   color="#D55E00", label="train (last epoch)")
        train.set_ylabel("train accuracy", color="#D55E00")
        top.set(ylabel="test accuracy", xscale="log")
        handles = top.get_legend_handles_labels()[0] + train.get_legend_handles_labels()[0]
        fig.legend(handles, [handle.get_label() for handle in handles], frameon=False, loc="outside upper center",
                   ncols=3)
        for ax, metric in zip(axes[1:], GEOMETRY):
            for subset in ordered_subsets(geometry["subset"].unique()):
                for at, style in (("final", "-"), ("best", "--")):
                    rows = geometry[(geometry["subset"] == subset) & (geometry["metric"] == metric)
                                    & (geometry["at"] == at)].sort_values("num_parameters")
                    ax.plot(rows["num_parameters"], rows["value"], linestyle=style, marker="o", markersize=2.5,
                            color=subset_color(subset), label=f"{subset}" if at == "final" else None)
            ax.set(ylabel=f"{metric_label(metric)} ({layer})", xscale="log",
                   yscale="log" if metric == "radius" else "linear")  # one outlying manifold must not flatten the rest
            ax.legend(frameon=False, ncols=2, title="solid: last epoch, dashed: best")
        axes[-1].set_xlabel("parameters")
        for ax in axes:
            ax.grid(alpha=0.3)
    return fig


def numbers(accuracy, geometry) -> dict:
    """The accuracy table, the size with the lowest final test accuracy, and the final-layer geometry."""
    accuracy = accuracy.sort_values("num_parameters")
    dip = accuracy.loc[accuracy["acc_test_final"].idxmin()]
    result = {"num_parameters": [int(n) for n in accuracy["num_parameters"]],
              "width": _flawed.rounded(list(accuracy["width"])),
              "layer": str(geometry["layer"].iloc[0]),
              "lowest_final_test_accuracy_at": int(dip["num_parameters"])}
    for column in ("acc_test_best", "acc_test_final", "acc_train_final", "best_epoch"):
        result[column] = _flawed.rounded(list(accuracy[column]))
    table = geometry.pivot_table("value", ["at", "subset", "metric"], "num_parameters")
    for (at, subset, metric), row in table.iterrows():
        if metric in ("capacity", *GEOMETRY):
            result[f"{metric}/{subset}/{at}"] = _flawed.rounded(list(row))
    return result


def run() -> None:
    args = _flawed.parser(__doc__).parse_args()
    accuracy, geometry = _flawed.table(args, "size_accuracy"), _flawed.table(args, "size_geometry")
    geometry["at"] = geometry["at"].astype(str)
    _flawed.save(figure(accuracy, geometry), args, "model_size", numbers(accuracy, geometry))


if __name__ == "__main__":
    _flawed.main(run)
