"""Shared command-line plumbing of the analysis/ scripts: arguments, run tables, saving, errors."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mftma.errors import MFTMAError


def parser(description: str, figures: bool = True) -> argparse.ArgumentParser:
    """Parser with RUN_DIR, --out (default RUN_DIR/results/figures) and, for figures, --formats."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (trained, cached and analysed)")
    result.add_argument("--out", metavar="DIR",
                        help=f"output folder (default: RUN_DIR/results{'/figures' if figures else ''})")
    if figures:
        result.add_argument("--formats", nargs="+", default=["png", "pdf"], metavar="FORMAT",
                            help="figure formats (default: png pdf)")
    return result


def analysed_run(run_dir):
    """(results table, per-epoch metrics, best analysed epoch, last analysed epoch) of a run."""
    from mftma.experiments.run import Run
    from mftma.results.table import load_results
    from mftma.pipeline.figures import analysed_best_epoch

    run = Run(run_dir)
    results, metrics = load_results(run.path), run.metrics()
    return results, metrics, analysed_best_epoch(metrics, results), int(results["epoch"].max())


def save(figure, args, name: str) -> None:
    """Save ``figure`` as ``<out>/<name>.<format>``, print the paths and close it."""
    import matplotlib.pyplot as plt

    from mftma.plotting import save_figure
    from mftma.pipeline.figures import figures_dir

    out = Path(args.out) if args.out else figures_dir(args.run_dir)
    for path in save_figure(figure, out / name, args.formats):
        print(path)
    plt.close(figure)


def main(body) -> None:
    """Run ``body()`` and exit; mftma errors become a one-line message and exit status 1."""
    try:
        body()
    except MFTMAError as error:
        sys.exit(f"error: {error}")
