"""``mftma quickstart --out DIR``: the whole pipeline on the default MNIST-1D run, with a summary."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Run the whole pipeline on the embedded default (MNIST-1D, a 1-D CNN, 30 % of the training labels permuted;
mftma/configs/mnist1d.yaml): train, cache the activations of about a dozen log-spaced epochs (always 0, the
best and the last epoch), analyze them (MFTMA capacity, radius, dimension, center correlation, data
dimension, linear probes), run the layer-rollback grid and draw every figure. Everything goes to DIR:

  DIR/run/                 the run directory (checkpoints, activations.h5, results/ with the tables
                           and results/figures/)
  DIR/summary.json         capacity, radius and dimension of each subset at the input and the final
                           analysed layer at the best and the last epoch; test accuracy at both; the best
                           rollback gain for the last k and the first k layers; the four claims
                           (held: true/false, with their evidence and thresholds); time per stage

The full profile takes about 4 minutes on 2 idle CPU cores; `--profile ci` runs the same stages on a tiny
run in seconds (for tests). Interrupted? Run the same command again: each stage keeps its finished work.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart", help="train, cache, analyze, plot and roll back the default run; write summary.json",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--profile", choices=["full", "ci"], default="full",
                        help="full: the default MNIST-1D replication (minutes); ci: a tiny run with a cheap "
                             "estimator (seconds) (default: full)")
    parser.add_argument("--config", metavar="CONFIG",
                        help="run config (shipped name or YAML path) replacing the profile's config")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide stage messages and progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.pipeline.quickstart import SUMMARY_FILE, quickstart

    summary = quickstart(args.out, profile=args.profile, config=args.config, progress=args.progress)
    print(f"\nbest epoch {summary['best_epoch']} (test accuracy {summary['test_accuracy']['best']:.3f}), "
          f"last epoch {summary['last_epoch']} (test accuracy {summary['test_accuracy']['last']:.3f})")
    true_best = summary["true_best"]
    if true_best["analysed_minus_true_epochs"]:
        print(f"the true best epoch {true_best['epoch']} (test accuracy {true_best['test_accuracy']:.3f}) has no "
              f"checkpoint; the analysed best is {true_best['analysed_minus_true_epochs']:+d} epochs from it, "
              f"{true_best['test_accuracy_gap']:.3f} lower in test accuracy")
    for key in "abcd":
        claim = summary["claims"][key]
        print(f"claim ({key}) {'held' if claim['held'] else 'did NOT hold'}: {claim['claim']}")
    print(f"summary: {args.out}/{SUMMARY_FILE}")
    return 0
