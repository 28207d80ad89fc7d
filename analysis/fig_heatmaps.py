"""Epoch x layer heatmaps of each metric per subset, and permuted/restored - unpermuted difference maps."""
from __future__ import annotations

import _script


def run() -> None:
    args = _parse()
    from mftma.plotting import difference_maps, metric_heatmaps

    results, _, best, _ = _script.analysed_run(args.run_dir)
    for metric in args.metrics or list(dict.fromkeys(results["metric"])):
        _script.save(metric_heatmaps(results, metric, best_epoch=best), args, f"heatmap_{metric}")
        if {"permuted", "unpermuted"} <= set(results.loc[results["metric"] == metric, "subset"]):
            _script.save(difference_maps(results, metric, best_epoch=best), args, f"difference_{metric}")


def _parse():
    parser = _script.parser(__doc__)
    parser.add_argument("--metrics", nargs="+", metavar="METRIC",
                        help="metrics to draw, e.g. capacity radius dimension probe_accuracy (default: all)")
    return parser.parse_args()


if __name__ == "__main__":
    _script.main(run)
