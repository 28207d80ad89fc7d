"""Simulated vs mean-field capacity across the layers and epochs of a cached run (ICLR 2021 Fig. 1B style).

Panel A: simulated capacity P / N_c (with its confidence interval) against the mean-field estimate, on the
identity line. Panel B: the ball approximation alpha_B(0, R_M, D_M) against the same estimate. With
--synthetic the points are synthetic manifolds of known shape instead of a run's cache.

Every finished cell is appended at once to capacity_validation.csv in the output folder; a rerun with the
same settings skips those cells, so an interrupted run resumes. Cells whose data are not separable for
most dichotomies even with all features (capacity below P / N) are listed and left out of the plot.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import _script

TABLE = "capacity_validation.csv"
#: Synthetic families of the --synthetic figure: (kind, radius, dimension, samples per manifold).
SYNTHETIC = [
    *itertools.product(["ball"], [0.25, 0.5, 1.0, 2.0], [1, 5], [8]),
    *itertools.product(["gaussian"], [0.5, 1.0, 2.0], [5, 20], [10]),
    ("random", 1.0, 1, 5),
    ("random", 1.0, 1, 10),
]


def run() -> None:
    args = _parse()
    import pandas as pd

    out = Path(args.out) if args.out else (Path(".") if args.synthetic else _figures_dir(args.run_dir))
    args.out = str(out)
    settings = {"precision": args.precision, "n_t": args.n_t, "seed": args.seed}
    table_path = out / TABLE
    done = pd.read_csv(table_path) if table_path.exists() else pd.DataFrame()
    cells = _synthetic_cells(args) if args.synthetic else _run_cells(args)
    for key, load in cells:
        if _finished(done, {**key, **settings}):
            continue
        row = {**key, **settings, **_measure(load(), args)}
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        _save_table(done, table_path)
        print(", ".join(f"{name}={value}" for name, value in key.items()), f"-> mean-field "
              f"{row['mean_field']:.4f}, simulated {row['simulated']:.4f}")
    selected = done[(done[list(settings)] == pd.Series(settings)).all(axis=1)]
    skipped = selected[selected["simulated"].isna()]
    for _, row in skipped.iterrows():
        print(f"left out (capacity below P/N, not simulable): {row.get('layer', row.get('kind'))} {row['note']}")
    simulated = selected.dropna(subset=["simulated"])
    if simulated.empty:
        from mftma.errors import InputError

        raise InputError(f"no selected cell could be simulated; the measured cells are in {table_path}")
    _script.save(_figure(simulated, args.synthetic), args, "capacity_validation")


def _parse():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="run directory holding activations.h5")
    parser.add_argument("--synthetic", action="store_true",
                        help="use synthetic balls and Gaussian clouds of known shape instead of a run")
    parser.add_argument("--epochs", nargs="+", type=int, metavar="EPOCH",
                        help="cached epochs (default: the first and the last)")
    parser.add_argument("--layers", nargs="+", metavar="LAYER", help="cached layers (default: all)")
    parser.add_argument("--subsets", nargs="+", default=["unpermuted", "permuted"], metavar="SUBSET",
                        help="cached subsets (default: unpermuted permuted)")
    parser.add_argument("--precision", type=float, default=0.1,
                        help="half-width of the separable fraction's interval near 1/2 (default: 0.1)")
    parser.add_argument("--n-t", type=int, default=200, metavar="N", help="t vectors per manifold (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation and the estimator (default: 0)")
    parser.add_argument("--jobs", type=int, metavar="N", help="threads of separability tests (default: all cores)")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default: RUN_DIR/results/figures, or . with --synthetic)")
    parser.add_argument("--formats", nargs="+", default=["png", "pdf"], metavar="FORMAT",
                        help="figure formats (default: png pdf)")
    args = parser.parse_args()
    if (args.run_dir is None) == (not args.synthetic):
        parser.error("give either RUN_DIR or --synthetic")
    return args


def _figures_dir(run_dir):
    from mftma.pipeline.figures import figures_dir

    return figures_dir(run_dir)


def _run_cells(args):
    """((epoch, layer, layer_index, subset), loader) for the selected complete cache entries."""
    from mftma.cache.reader import ActivationCache

    path = args.run_dir
    with ActivationCache(path) as cache:
        entries = cache.entries()
    entries = entries[entries["complete"]]
    cached = sorted(entries["epoch"].unique())
    epochs = args.epochs or [cached[0], cached[-1]]
    chosen = entries[entries["epoch"].isin(epochs) & entries["subset"].isin(args.subsets)]
    if args.layers:
        chosen = chosen[chosen["layer"].isin(args.layers)]
    for row in chosen.itertuples():
        key = {"epoch": int(row.epoch), "layer": row.layer, "layer_index": int(row.layer_index),
               "subset": row.subset}

        def load(row=row):
            with ActivationCache(path) as cache:
                return cache.manifolds(int(row.epoch), row.layer, row.subset)

        yield key, load


def _synthetic_cells(args):
    from mftma.estimator.synthetic import synthetic_manifolds

    for kind, radius, dimension, samples in SYNTHETIC:
        key = {"kind": kind, "radius": radius, "dimension": dimension, "M": samples}
        yield key, lambda k=key: synthetic_manifolds(k["kind"], 24, 200, k["M"], radius=k["radius"],
                                                     dimension=k["dimension"], seed=args.seed)


def _finished(done, row) -> bool:
    import pandas as pd

    if done.empty or not set(row) <= set(done.columns):
        return False
    return bool((done[list(row)] == pd.Series(row)).all(axis=1).any())


def _measure(manifolds, args) -> dict:
    import math

    from mftma.errors import InputError
    from mftma.estimator.analysis import analyze_manifolds
    from mftma.estimator.simulated import simulated_capacity
    from mftma.estimator.theory import ball_capacity

    geometry = analyze_manifolds(manifolds, n_t=args.n_t, seed=args.seed)
    row = {"P": len(manifolds), "N": manifolds[0].shape[0], "mean_field": geometry.capacity_avg,
           "radius_M": geometry.radius_avg, "dimension_M": geometry.dimension_avg,
           "ball": float(ball_capacity(0.0, geometry.radius_avg, geometry.dimension_avg)),
           "mean_field_seconds": geometry.timings["total"], "note": ""}
    try:
        simulated = simulated_capacity(manifolds, precision=args.precision, seed=args.seed, n_jobs=args.jobs)
    except InputError as error:
        return {**row, "simulated": math.nan, "ci_low": math.nan, "ci_high": math.nan, "N_c": math.nan,
                "n_tests": 0, "simulated_seconds": 0.0, "note": str(error).split(":")[0]}
    return {**row, "simulated": simulated.alpha, "ci_low": simulated.ci_low, "ci_high": simulated.ci_high,
            "N_c": simulated.N_c, "n_tests": simulated.timings["n_tests"],
            "simulated_seconds": simulated.timings["total"]}


def _save_table(table, path) -> None:
    from mftma.atomic import atomic_path

    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)


def _figure(table, synthetic: bool):
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    from mftma.plotting.labels import annotate_apart
    from mftma.plotting.style import PAPER_WIDTH, paper_style, subset_color

    with paper_style():
        figure, axes = plt.subplots(1, 2, figsize=(PAPER_WIDTH, PAPER_WIDTH / 2.1 + 0.3), layout="constrained")
        groups = table.groupby("kind" if synthetic else "subset", sort=False)
        for name, group in groups:
            color = None if synthetic else subset_color(name)
            errors = np.clip([group["simulated"] - group["ci_low"], group["ci_high"] - group["simulated"]], 0, None)
            axes[0].errorbar(group["mean_field"], group["simulated"], yerr=errors, fmt="o", ms=4, capsize=2,
                             color=color, label=name)
            axes[1].plot(group["mean_field"], group["ball"], "o", ms=4, color=color, label=name)
        labels = ["simulated capacity $P/N_c$", "ball approximation $\\alpha_B(0, R_M, D_M)$"]
        values = table[["mean_field", "simulated", "ball"]].to_numpy()
        low, high = np.nanmin(values) * 0.8, np.nanmax(values) * 1.25
        for axis, label, letter in zip(axes, labels, "AB"):
            axis.plot([low, high], [low, high], "k--", lw=0.8, label="identity")
            axis.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high),
                     xlabel="mean-field capacity $\\alpha_M$", ylabel=label)
            subs = (1.0, 2.0, 5.0) if high / low > 2.5 else np.arange(1.0, 10.0)
            for ticks in (axis.xaxis, axis.yaxis):
                ticks.set_major_locator(LogLocator(subs=subs))
                ticks.set_major_formatter(FormatStrFormatter("%g"))
                ticks.set_minor_formatter(NullFormatter())
            axis.set_title(letter, loc="left", fontweight="bold")
        handles, names = axes[0].get_legend_handles_labels()
        figure.legend(handles, names, loc="outside lower center", ncols=len(names), frameon=False)
        if not synthetic:
            texts = [row.layer if table["epoch"].nunique() == 1 else f"{row.layer} e{row.epoch}"
                     for row in table.itertuples()]
            colors = [subset_color(subset) for subset in table["subset"]]
            for axis, column in zip(axes, ["simulated", "ball"]):
                annotate_apart(axis, table[["mean_field", column]].to_numpy(), texts, colors)
    return figure


if __name__ == "__main__":
    _script.main(run)
