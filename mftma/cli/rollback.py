"""``mftma rollback RUN_DIR``: roll blocks of the final network back to earlier epochs."""
from __future__ import annotations

import argparse

from mftma.cli.options import add_option, add_options

DESCRIPTION = """\
Layer rollback (docs/method.md section 5). Starting from the final checkpoint of a trained run, replace the
parameters and buffers of the last k blocks (direction `last`) or, as a control, of the first k blocks
(direction `first`) with those of epoch e, and measure the accuracy of the resulting network on test
examples, unpermuted training examples, permuted training examples against their training labels, and
the same permuted examples against their true labels (`restored`). k = 0 is the final network.

The table (one row per direction, k, epoch and subset) goes to RUN_DIR/results/rollback.csv and
rollback.h5 after every epoch e, and the k x e heatmaps of the accuracy change to
RUN_DIR/results/figures/rollback.png and .pdf. Rerunning skips finished cells; every row records the
weights of the two checkpoints it came from, and rows of older or replaced checkpoints are recomputed.

With --geometry, the MFTMA capacity, radius and dimension of the rolled-back networks' layers are also
measured on the examples of the activation cache (run `mftma cache RUN_DIR` first), reduced the same way,
into RUN_DIR/results/rollback_geometry.csv and .h5. This runs the estimator for every cell, layer and
subset: restrict it with --layers, --k and --epochs.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "rollback", help="accuracy after rolling the last (or first) k layers back to epoch e",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `mftma train`")
    parser.add_argument("--k", nargs="+", type=int, metavar="K",
                        help="numbers of blocks to roll back (default: every k from 1 to the number of blocks)")
    add_option(parser, "--epochs", "checkpointed epochs to roll back to (default: 0, the best epoch and two "
                                   "log-spaced checkpoints before the final epoch)")
    parser.add_argument("--direction", choices=["last", "first", "both"], default="both",
                        help="roll back the last k blocks, the first k (control), or both (default: both)")
    parser.add_argument("--geometry", action="store_true",
                        help="also measure capacity, radius and dimension of the rolled-back networks' layers")
    add_option(parser, "--layers", "with --geometry: cached layers to measure (default: all cached layers)")
    add_options(parser, "--kappa", "--n-t", "--n-reps")
    add_option(parser, "--seed", "with --geometry: seed of the estimator's random draws (default: 0)")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="do not draw the heatmaps")
    add_option(parser, "--no-progress")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.experiments.run import Run
    from mftma.pipeline.rollback import DIRECTIONS, load_rollback, rollback, rollback_csv_path, rollback_geometry

    directions = DIRECTIONS if args.direction == "both" else (args.direction,)
    grid = dict(ks=args.k, epochs=args.epochs, directions=directions, progress=args.progress)
    table = rollback(args.run_dir, **grid)
    print(f"{rollback_csv_path(args.run_dir)}: {len(table)} rows for this call")
    print_headline(table, directions, len(Run(args.run_dir).build_model().blocks))
    if args.geometry:
        geometry = rollback_geometry(args.run_dir, layers=args.layers, kappa=args.kappa, n_t=args.n_t,
                                     n_reps=args.n_reps, seed=args.seed, **grid)
        print(f"{rollback_csv_path(args.run_dir).with_name('rollback_geometry.csv')}: {len(geometry)} rows "
              "for this call")
    if args.plot:
        import matplotlib.pyplot as plt

        from mftma.plotting import rollback_heatmaps, save_figure
        from mftma.pipeline.figures import figures_dir

        figure = rollback_heatmaps(load_rollback(args.run_dir))
        for path in save_figure(figure, figures_dir(args.run_dir) / "rollback"):
            print(f"wrote {path}")
        plt.close(figure)
    return 0


def print_headline(table, directions, n_blocks: int) -> None:
    """Print the best recovery of test accuracy by a partial rollback, per direction."""
    from mftma.pipeline.rollback import best_partial_gain

    for direction in directions:
        print(gain_line(direction, best_partial_gain(table, direction, n_blocks), n_blocks))


def gain_line(direction: str, best: dict | None, n_blocks: int) -> str:
    """One sentence on :func:`~mftma.pipeline.rollback.best_partial_gain`'s result (shared with quickstart)."""
    if best is None:
        return f"{direction}: no partial rollback in the grid (1 <= k < {n_blocks})"
    return (f"rolling back the {direction} {best['k']} of {n_blocks} blocks to epoch {best['epoch']}: test accuracy "
            f"{best['test_accuracy']:.3f} against {best['test_accuracy_final']:.3f} for the final network "
            f"({100 * best['gain']:+.1f} points, the best of the grid)")
