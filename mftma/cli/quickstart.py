"""``mftma quickstart --out DIR``: the whole pipeline on the default MNIST-1D run, with a summary."""
from __future__ import annotations

import argparse
import pathlib

from mftma.cli.options import add_option

DESCRIPTION = """\
Run the whole pipeline on the embedded default (MNIST-1D, a 1-D CNN, 30 % of the training labels permuted;
mftma/configs/mnist1d.yaml) for K runs that differ in every seed (data, corruption, model initialisation and
training, cache): train them (in parallel, one per CPU core), cache the activations of about seven
log-spaced epochs (always 0, the best and the last epoch), analyze them (MFTMA capacity, radius, dimension,
center correlation, data dimension, linear probes), run the layer-rollback grid and draw every figure as
PNG (`mftma plot DIR/run_0 --formats pdf` adds PDFs; `mftma analyze` adds epochs). Everything goes to DIR:

  DIR/run_0/ ... run_<K-1>/  the run directories (checkpoints, activations.h5, results/ with the tables
                             and results/figures/)
  DIR/summary.json           per run: capacity, radius and dimension of each subset at the input and the
                             final analysed layer at the best and the last epoch, test accuracy at both, the
                             best rollback gains, the four claims and the time per stage; over the runs:
                             each claim's statistics (margins, positive = holds) per seed, their mean, 95 %
                             Student t interval over seeds and the verdict on the interval (held / not held /
                             undecided), and the rollback gains likewise

The full profile's 3 seeds take about 10 minutes on 2 idle CPU cores; `--profile ci` runs the same stages
on tiny runs in seconds (for tests). Interrupted? Run the same command again: each stage keeps its finished
work. `mftma claims RUN_DIR...` gives the same verdicts for any analysed runs.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart", help="train, cache, analyze, plot and roll back K seeds of the default run; write summary.json",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_option(parser, "--out", "output folder (created if missing)", required=True, metavar="DIR")
    parser.add_argument("--profile", choices=["full", "ci"], default="full",
                        help="full: the default MNIST-1D replication (minutes per seed); ci: tiny runs with a "
                             "cheap estimator (seconds) (default: full)")
    parser.add_argument("--seeds", type=int, metavar="K",
                        help="number of runs, each with all seeds shifted by its index (default: 3 for full, "
                             "2 for ci)")
    parser.add_argument("--config", metavar="CONFIG",
                        help="run config (shipped name or YAML path) replacing the profile's config")
    add_option(parser, "--no-progress", "hide stage messages and progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.cli.claims import print_verdicts
    from mftma.cli.rollback import gain_line
    from mftma.experiments.run import Run
    from mftma.pipeline.analyze import warning_summary
    from mftma.pipeline.quickstart import SUMMARY_FILE, quickstart
    from mftma.results.table import load_results

    summary = quickstart(args.out, profile=args.profile, config=args.config, seeds=args.seeds,
                         progress=args.progress)
    print()
    for run_summary in summary["runs"]:
        run_dir = pathlib.Path(args.out) / run_summary["run_dir"]
        print(f"{run_summary['run_dir']}: best epoch {run_summary['best_epoch']} (test accuracy "
              f"{run_summary['test_accuracy']['best']:.3f}), last epoch {run_summary['last_epoch']} "
              f"(test accuracy {run_summary['test_accuracy']['last']:.3f})")
        true_best = run_summary["true_best"]
        if true_best["analysed_minus_true_epochs"]:
            print(f"  the true best epoch {true_best['epoch']} (test accuracy {true_best['test_accuracy']:.3f}) has "
                  f"no checkpoint; the analysed best is {true_best['analysed_minus_true_epochs']:+d} epochs from it, "
                  f"{true_best['test_accuracy_gap']:.3f} lower in test accuracy")
        n_blocks = len(Run(run_dir).build_model().blocks)
        for direction, best in run_summary["rollback"].items():
            print("  " + gain_line(direction, best, n_blocks))
        warned = warning_summary(load_results(run_dir), run_dir)
        if warned:
            print(warned)
    print_verdicts(summary)
    print(f"summary: {args.out}/{SUMMARY_FILE}")
    return 0
