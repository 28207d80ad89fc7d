"""``mftma train CONFIG --out RUN_DIR``: train a network on partly corrupted labels, resumably."""
from __future__ import annotations

import argparse

from mftma.cli.options import add_deprecated_alias, add_option

DESCRIPTION = """\
Train the network described by CONFIG (a YAML file, or the name of a built-in config: mnist1d, tiny,
digits, cifar100_vgg16) and record it in RUN_DIR:

  config.yaml, run.json        the settings and metadata (settings hash, data set, corruption, versions)
  corruption.npz               true and training labels and the permuted mask
  checkpoints/epoch_XXXX.pt    weights at the scheduled epochs (0 = initialisation) and at the epoch of
                               best test accuracy so far (the previous best's file goes unless scheduled)
  metrics.csv                  per epoch: lr, loss, acc_train, acc_unpermuted, acc_permuted (against the
                               training labels), acc_permuted_true, loss_test, acc_test, seconds
  example_signals/             per epoch and training example: loss, logit-gradient norm, margin and
                               whether the training label is predicted (for `mftma detect-noise`)

Every epoch is committed atomically, so an interrupted run continues where it stopped when the same
command is run again, with the same weights an uninterrupted run would have had (on the CPU). A RUN_DIR
that holds a run with other settings is refused; choose another --out. A NaN or infinite loss stops
training with an error naming the epoch; RUN_DIR keeps the epochs before it.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a network with label noise into a run directory", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG", help="YAML run config, or a built-in config name")
    add_option(parser, "--out", "run directory to create, or to resume when it holds the same settings",
               required=True, metavar="RUN_DIR")
    n_epochs = parser.add_argument("--n-epochs", type=int, metavar="N",
                                   help="override training.epochs (changes the settings hash, hence needs a new "
                                        "RUN_DIR)")
    add_deprecated_alias(parser, "--epochs", n_epochs)
    add_option(parser, "--device", "override training.device: auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--num-threads", type=int, metavar="N",
                        help="override training.num_threads (CPU threads for torch)")
    add_option(parser, "--no-progress")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    config = load_config(args.config)
    overrides = {"epochs": args.n_epochs, "device": args.device, "num_threads": args.num_threads}
    config = config.replace(training={key: value for key, value in overrides.items() if value is not None})
    finished = train(config, args.out, progress=args.progress)
    metrics = finished.metrics().set_index("epoch")
    best, last = finished.best_epoch(), int(metrics.index.max())
    print(f"{finished.path}: {last} epochs; test accuracy {metrics.loc[best, 'acc_test']:.3f} at the best epoch "
          f"{best}, {metrics.loc[last, 'acc_test']:.3f} at the last; permuted training accuracy "
          f"{metrics.loc[last, 'acc_permuted']:.3f} at the last epoch")
    return 0
