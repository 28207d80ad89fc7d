"""``mftma plot RUN_DIR``: draw every figure of an analysed run."""
from __future__ import annotations

import argparse

from mftma.cli.options import add_option

DESCRIPTION = """\
Draw the figures of an analysed run (after `mftma analyze RUN_DIR`) from its results table, into
RUN_DIR/results/figures (or --out):

  training_curves        loss and accuracy per subset across epochs (best epoch dashed)
  heatmap_<metric>       epoch x layer heatmap of each metric, one panel per subset, one colour scale
  difference_<metric>    permuted - unpermuted and restored - unpermuted, diverging colours centred at 0
  layer_profiles         capacity, radius, dimension per layer at the best and the last analysed epoch,
                         all subsets on one axis (the layout of ICLR 2021 Fig. 3)
  rollback               k x e maps of the accuracy change after `mftma rollback RUN_DIR` (if it was run)

The best epoch is the analysed epoch with the highest test accuracy. Figures are 7 in wide with text of
at least 8 pt, and every file is written atomically.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw heatmaps, difference maps, layer profiles, curves and rollback maps of a run",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory analysed by `mftma analyze`")
    add_option(parser, "--out", "output folder (default: RUN_DIR/results/figures)", metavar="DIR")
    parser.add_argument("--formats", nargs="+", default=["png", "pdf"], metavar="FORMAT",
                        help="file formats to write, any matplotlib format (default: png pdf)")
    add_option(parser, "--no-progress", "do not list the written figures")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.plotting.figures import plot_run

    written = plot_run(args.run_dir, out_dir=args.out, formats=args.formats, progress=args.progress)
    print(f"{len(written)} files written")
    return 0
