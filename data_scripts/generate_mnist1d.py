"""Generate MNIST-1D offline with the mnist1d package's local generator and write it as an .npz data set."""
from __future__ import annotations

import argparse
import sys

from mftma.errors import MFTMAError
from mftma.experiments.datasets import load_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Generate MNIST-1D (1 x 40 inputs, 10 classes) with mnist1d's local generator, never its "
                    "download path, and write it as an .npz that mftma.experiments.datasets.Dataset.load reads.")
    parser.add_argument("--out", required=True, help="output .npz file (written atomically)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--n-train", type=int, default=4000, help="training examples (default: 4000)")
    parser.add_argument("--n-test", type=int, default=1000, help="test examples (default: 1000)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        dataset = load_dataset("mnist1d", seed=args.seed, n_train=args.n_train, n_test=args.n_test)
        dataset.save(args.out)
    except MFTMAError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    print(f"wrote {args.out}: {len(dataset.y_train)} train and {len(dataset.y_test)} test examples, "
          f"input shape {dataset.input_shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
