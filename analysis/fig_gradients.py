"""Gradient norms of permuted and unpermuted examples per block over the first epochs, and their ratio.

Reads EXPERIMENT_DIR/gradients.csv (`mftma flawed gradients`); writes gradients.png/.pdf and gradients.json.
"""
from __future__ import annotations

import _flawed


def figure(table):
    """Left: mean-gradient norm per block against the epoch (solid unpermuted, dashed permuted);
    right: their ratio, with the whole network in black."""
    import matplotlib.pyplot as plt

    from mftma.plotting.style import PAPER_WIDTH, paper_style

    blocks = table.sort_values("layer_index")["layer"].unique()
    colors = dict(zip(blocks, plt.get_cmap("viridis")([i / max(len(blocks) - 1, 1) for i in range(len(blocks))])))
    colors["all"] = "black"
    with paper_style():
        fig, (norms, ratios) = plt.subplots(1, 2, figsize=(PAPER_WIDTH, 2.8), layout="constrained")
        for block in blocks:
            rows = table[table["layer"] == block].sort_values("epoch")
            norms.plot(rows["epoch"], rows["unpermuted"], color=colors[block], label=block)
            norms.plot(rows["epoch"], rows["permuted"], color=colors[block], linestyle="--")
            ratios.plot(rows["epoch"], rows["ratio"], color=colors[block], marker="o", markersize=2.5, label=block)
        norms.set(xlabel="epoch", ylabel="||summed gradient|| / n", yscale="log",
                  title=f"solid: unpermuted, dashed: permuted (n = {int(table['n'].iloc[0])} each)")
        ratios.axhline(1.0, color="0.5", linewidth=0.8)
        ratios.set(xlabel="epoch", ylabel="permuted / unpermuted", title="ratio of gradient norms")
        for ax in (norms, ratios):
            ax.grid(alpha=0.3)
        ratios.legend(frameon=False, ncols=2)
    return fig


def numbers(table) -> dict:
    """The ratio per block at every epoch, and the group size."""
    ratio = table.pivot_table("ratio", "layer", "epoch")
    return {"n_per_group": int(table["n"].iloc[0]), "epochs": [int(epoch) for epoch in ratio.columns],
            "ratio": {block: _flawed.rounded(list(ratio.loc[block])) for block in ratio.index}}


def run() -> None:
    args = _flawed.parser(__doc__).parse_args()
    table = _flawed.table(args, "gradients")
    _flawed.save(figure(table), args, "gradients", numbers(table))


if __name__ == "__main__":
    _flawed.main(run)
