"""``mftma detect-noise RUN_DIR``: how well per-example training signals find the mislabeled examples."""
from __future__ import annotations

import argparse

from mftma.cli.options import add_option

DESCRIPTION = """\
Rank the training examples of RUN_DIR by signals recorded during training and measure, at every epoch,
how well each ranking finds the permuted (mislabeled) examples, which are known from corruption.npz.

Signals (higher = more suspicious; from the eval-mode logits after each epoch, against the training labels):

  loss                  cross-entropy at the epoch
  logit_grad_norm       ||softmax - onehot||, the exact norm of the loss's gradient w.r.t. the logits
  negative_margin       largest other logit minus the training label's logit
  cumulative_loss       sum of the losses of epochs 0..e
  first_fitted_epoch    first epoch (from 1) at which the training label is predicted (e + 1 if never)
  forgetting_events     times, in epochs 1..e, a predicted training label stopped being predicted

Scores per (epoch, signal): ROC-AUC (chance 0.5) and precision at epsilon, the fraction of permuted examples
among the round(epsilon * n) top-ranked (chance epsilon, the run's fraction of permuted examples).

Writes noise_detection.csv (columns epoch, signal, roc_auc, precision_at_eps, epsilon, n_train, n_permuted)
and the figure noise_detection.<format> (ROC-AUC and precision against epoch, one line per signal) into
RUN_DIR/results (or --out), and prints the best signal, epoch and AUC. Training records the signals in
RUN_DIR/example_signals/ since they were introduced; an older run must be trained again into a new
directory (`mftma train CONFIG --out NEW_RUN_DIR`).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect-noise", help="find the mislabeled training examples from per-example training signals",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `mftma train`")
    add_option(parser, "--out", "output folder (default: RUN_DIR/results)", metavar="DIR")
    parser.add_argument("--formats", nargs="+", default=["png"], metavar="FORMAT",
                        help="figure formats, any matplotlib format (default: png)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.pipeline.detect_noise import best_detection, detect_noise

    table, written = detect_noise(args.run_dir, out_dir=args.out, formats=args.formats)
    best = best_detection(table)
    last = table[table["epoch"] == table["epoch"].max()].set_index("signal")
    print(f"best: {best['signal']} at epoch {best['epoch']}: ROC-AUC {best['roc_auc']:.3f}, precision at "
          f"epsilon = {best['epsilon']:.2f}: {best['precision_at_eps']:.3f}")
    print(f"at the last epoch {table['epoch'].max()}: " + ", ".join(
        f"{signal} {row.roc_auc:.3f}" for signal, row in last.iterrows()))
    for path in written:
        print(f"wrote {path}")
    return 0
