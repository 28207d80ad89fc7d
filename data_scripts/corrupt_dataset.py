"""Write a corrupted variant of a data set and its corruption record (docs/method.md §4.1)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from mftma.errors import MFTMAError
from mftma.experiments.corruptions import CORRUPTIONS, corrupt
from mftma.experiments.datasets import DATASET_NAMES, Dataset, load_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Corrupt the training set of a data set (labels permuted, random labels, shuffled or "
                    "random pixels, Gaussian inputs; the test set is never corrupted) and write the corrupted "
                    "data set and the record of true labels, training labels and randomized-label mask.")
    parser.add_argument("source", help=f"a data set name ({', '.join(DATASET_NAMES)}) or an .npz written by "
                                       "generate_*.py / Dataset.save")
    parser.add_argument("--data-dir", help="folder of downloaded files (CIFAR)")
    parser.add_argument("--seed", type=int, default=0, help="data set seed when loading by name (default: 0)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a data set option when loading by name, e.g. n_train=1000 (repeatable)")
    parser.add_argument("--kind", choices=CORRUPTIONS, default="permute", help="corruption (default: permute)")
    parser.add_argument("--fraction", type=float, default=0.2,
                        help="permute: fraction epsilon of training labels randomized (default: 0.2)")
    parser.add_argument("--corruption-seed", type=int, default=0, help="seed of the corruption (default: 0)")
    parser.add_argument("--out", required=True, help="output .npz of the corrupted data set")
    parser.add_argument("--record", required=True, help="output .npz of the corruption record")
    return parser


def parse_options(pairs: list[str], parser: argparse.ArgumentParser) -> dict:
    """``KEY=VALUE`` strings to a dict, each value read as YAML (so numbers become numbers)."""
    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            parser.error(f"--option expects KEY=VALUE, got {pair!r}")
        options[key] = yaml.safe_load(value)
    return options


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options = parse_options(args.option, parser)
    try:
        if args.source.endswith(".npz") or Path(args.source).is_file():
            dataset = Dataset.load(args.source)
        else:
            dataset = load_dataset(args.source, data_dir=args.data_dir, seed=args.seed, **options)
        corrupted, record = corrupt(dataset, args.kind, fraction=args.fraction, seed=args.corruption_seed)
        corrupted.save(args.out)
        record.save(args.record)
    except MFTMAError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    print(f"wrote {args.out} and {args.record}: {args.kind}, {int(record.permuted_mask.sum())} of "
          f"{len(record.permuted_mask)} training labels randomized")
    return 0


if __name__ == "__main__":
    sys.exit(main())
