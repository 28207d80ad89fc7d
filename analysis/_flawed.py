"""Shared plumbing of the flawed-model figure scripts: arguments, tables, saving a figure with its numbers."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from _script import main  # noqa: F401  (re-exported: errors become one-line messages)


def parser(description: str) -> argparse.ArgumentParser:
    """Parser with EXPERIMENT_DIR, --out (default EXPERIMENT_DIR/figures) and --formats."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("experiment_dir", metavar="EXPERIMENT_DIR",
                        help="folder written by `mftma flawed EXPERIMENT CONFIG --out EXPERIMENT_DIR`")
    result.add_argument("--out", metavar="DIR", help="output folder (default: EXPERIMENT_DIR/figures)")
    result.add_argument("--formats", nargs="+", default=["png", "pdf"], metavar="FORMAT",
                        help="figure formats (default: png pdf)")
    return result


def table(args, name: str):
    """The experiment's table ``<name>.csv``."""
    from mftma.pipeline.flawed.experiment import read_table

    return read_table(args.experiment_dir, name)


def save(figure, args, name: str, numbers: dict) -> None:
    """Write ``<out>/<name>.<format>`` and the figure's numbers ``<out>/<name>.json``; print the paths."""
    import matplotlib.pyplot as plt

    from mftma.atomic import atomic_write_text
    from mftma.plotting import save_figure

    out = Path(args.out) if args.out else Path(args.experiment_dir) / "figures"
    for path in save_figure(figure, out / name, args.formats):
        print(path)
    plt.close(figure)
    atomic_write_text(out / f"{name}.json", json.dumps(numbers, indent=1, sort_keys=True))
    print(out / f"{name}.json")


def rounded(value, digits: int = 4):
    """``value`` (a number or nested lists/dicts of them) rounded for a readable JSON file; NaN -> None."""
    if isinstance(value, dict):
        return {str(key): rounded(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(item, digits) for item in value]
    value = float(value)
    return None if value != value else round(value, digits)
