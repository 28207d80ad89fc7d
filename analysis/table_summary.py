"""Table of a metric per layer at the best and the last epoch for every subset (printed, and saved as CSV)."""
from __future__ import annotations

import _script


def run() -> None:
    parser = _script.parser(__doc__, figures=False)
    parser.add_argument("--metric", default="capacity", help="metric to tabulate (default: capacity)")
    args = parser.parse_args()
    from pathlib import Path

    from mftma.atomic import atomic_write
    from mftma.results.table import results_dir
    from mftma.plotting.style import ordered_subsets

    results, metrics, best, last = _script.analysed_run(args.run_dir)
    rows = results[(results["metric"] == args.metric) & results["epoch"].isin([best, last])]
    table = rows.pivot_table("value", ["layer_index", "layer"], ["epoch", "subset"])
    table = table[[(epoch, subset) for epoch in dict.fromkeys([best, last])
                   for subset in ordered_subsets(rows["subset"].unique())]]
    table.columns = [f"{'best' if epoch == best else 'last'} {subset}" for epoch, subset in table.columns]
    accuracy = metrics.set_index("epoch")["acc_test"]
    print(f"{args.metric}; best epoch {best} (test accuracy {accuracy[best]:.3f}), "
          f"last epoch {last} (test accuracy {accuracy[last]:.3f})")
    print(table.droplevel("layer_index").to_string(float_format="{:.4f}".format))
    path = (Path(args.out) if args.out else results_dir(args.run_dir)) / f"summary_{args.metric}.csv"
    atomic_write(path, lambda temporary: table.to_csv(temporary))
    print(path)


if __name__ == "__main__":
    _script.main(run)
