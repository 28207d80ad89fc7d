"""Check a downloaded CIFAR-10 / CIFAR-100 folder: files present, shapes and label ranges."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from mftma.errors import MFTMAError
from mftma.experiments.datasets import read_cifar


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Verify CIFAR files downloaded from https://www.cs.toronto.edu/~kriz/cifar.html (python "
                    "version): every batch file is present and readable without running code, images are "
                    "uint8 3x32x32, labels lie in range; print the split sizes and per-class counts.")
    parser.add_argument("--data-dir", required=True,
                        help="the extracted cifar-10-batches-py / cifar-100-python folder, or its parent")
    parser.add_argument("--name", choices=("cifar10", "cifar100"), default="cifar10",
                        help="which data set to check (default: cifar10)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        x_train, y_train, x_test, y_test, names = read_cifar(args.name, args.data_dir)
    except MFTMAError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        counts = np.bincount(y, minlength=len(names))
        print(f"{args.name} {split}: {len(y)} images of shape {x.shape[1:]}, labels {y.min()}-{y.max()}, "
              f"{counts.min()}-{counts.max()} per class")
    print(f"{args.name}: OK ({len(names)} classes: {', '.join(names[:5])}, ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
