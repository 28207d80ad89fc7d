"""The ``mftma`` command line.

Each subcommand lives in its own module ``mftma.cli.<name>`` that defines

``register(subparsers)``
    adds its parser (with ``help`` and a ``description`` that explains it) and sets
    ``func=run`` as the parser default;
``run(args)``
    does the work and returns an exit status (0 on success).

Options that several subcommands share come from :mod:`mftma.cli.options` (one table).
Modules import heavy dependencies (torch, numba, dask) inside ``run`` so that
``mftma --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from mftma import __version__
from mftma.errors import MFTMAError

#: Subcommand modules, in the order ``mftma --help`` lists them.
COMMAND_MODULES = [
    "quickstart",
    "demo",
    "train",
    "cache",
    "analyze",
    "plot",
    "rollback",
    "claims",
    "study",
    "detect-noise",
    "flawed",
    "simcap",
    "diagnose",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mftma",
        description=(
            "Where and when a deep network memorizes: train with label noise, cache every layer's "
            "activations across epochs, and measure mean-field manifold capacity, radius, dimension "
            "and linear-probe accuracy for unpermuted, permuted, restored and test examples."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mftma {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mftma.cli.{name.replace('-', '_')}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):  # bare `mftma`: the help, as a usage error
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except MFTMAError as error:
        print(f"mftma {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mftma {args.command}: interrupted; finished work is kept, rerun to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
