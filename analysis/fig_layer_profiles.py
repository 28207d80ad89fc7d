"""Capacity, radius and dimension per layer at the best and the last epoch, all subsets on one axis (Fig. 3)."""
from __future__ import annotations

import _script


def run() -> None:
    args = _parse()
    from mftma.plotting import layer_profiles

    results, _, best, last = _script.analysed_run(args.run_dir)
    epochs = {"best epoch": best, "last epoch": last} if args.epochs is None else \
        {f"epoch {epoch}": epoch for epoch in args.epochs}
    _script.save(layer_profiles(results, epochs, args.metrics), args, "layer_profiles")


def _parse():
    parser = _script.parser(__doc__)
    parser.add_argument("--epochs", nargs="+", type=int, metavar="EPOCH",
                        help="analysed epochs to show as columns (default: the best and the last epoch)")
    parser.add_argument("--metrics", nargs="+", default=["capacity", "radius", "dimension"], metavar="METRIC",
                        help="metrics to show as rows (default: capacity radius dimension)")
    return parser.parse_args()


if __name__ == "__main__":
    _script.main(run)
