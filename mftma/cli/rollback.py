"""``mftma rollback RUN_DIR``: roll blocks of the final network back to earlier epochs."""
from __future__ import annotations

import argparse

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
    parser.add_argument("--epochs", nargs="+", type=int, metavar="EPOCH",
                        help="checkpointed epochs to roll back to (default: 0, the best epoch and two "
                             "log-spaced checkpoints before the final epoch)")
    parser.add_argument("--direction", choices=["last", "first", "both"], default="both",
                        help="roll back the last k blocks, the first k (control), or both (default: both)")
    parser.add_argument("--geometry", action="store_true",
                        help="also measure capacity, radius and dimension of the rolled-back networks' layers")
    parser.add_argument("--layers", nargs="+", metavar="LAYER",
                        help="with --geometry: cached layers to measure (default: all cached layers)")
    parser.add_argument("--n-t", type=int, default=200, help="with --geometry: Gaussian t vectors (default: 200)")
    parser.add_argument("--n-reps", type=int, default=10,
                        help="with --geometry: restarts of the center-structure optimisation (default: 10)")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="do not draw the heatmaps")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.pipeline.rollback import DIRECTIONS, load_rollback, rollback, rollback_csv_path, rollback_geometry

    directions = DIRECTIONS if args.direction == "both" else (args.direction,)
    grid = dict(ks=args.k, epochs=args.epochs, directions=directions, progress=args.progress)
    table = rollback(args.run_dir, **grid)
    print(f"{rollback_csv_path(args.run_dir)}: {len(table)} rows for this call")
    if args.geometry:
        geometry = rollback_geometry(args.run_dir, layers=args.layers, n_t=args.n_t, n_reps=args.n_reps, **grid)
        print(f"{rollback_csv_path(args.run_dir).with_name('rollback_geometry.csv')}: {len(geometry)} rows for this call")
    if args.plot:
        import matplotlib.pyplot as plt

        from mftma.plotting import rollback_heatmaps, save_figure
        from mftma.pipeline.figures import figures_dir

        figure = rollback_heatmaps(load_rollback(args.run_dir))
        for path in save_figure(figure, figures_dir(args.run_dir) / "rollback"):
            print(f"wrote {path}")
        plt.close(figure)
    return 0
