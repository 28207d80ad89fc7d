"""``mftma plot RUN_DIR``: draw every figure of an analysed run."""
from __future__ import annotations

import argparse

from mftma.cli.options import add_option

DESCRIPTION = """\
Draw the figures of an analysed run (after `mftma analyze RUN_DIR`) from its results table, into
RUN_DIR/results/figures (or --out):

  training_curves        loss and accuracy per subset across epochs (best epoch dashed)
  heatmap_<metric>       epoch x layer heatmap of each metric, one panel per subset, one colour scale
  difference_<metric>    permuted - unpermuted and restored - unpermuted, diverging colours centred at 0
  layer_profiles         capacity, radius, dimension per layer at the best and the last analysed epoch,
                         all subsets on one axis (the layout of ICLR 2021 Fig. 3)
  rollback               k x e maps of the accuracy change after `mftma rollback RUN_DIR` (if it was run)
  embedding_<layer>      2-D PCA of the penultimate cached layer at the first, best, a later and the last
                         cached epoch: unpermuted by label, permuted by training label, restored by true
                         label (if the activation cache is present; analysis/fig_embedding.py for options)

Heatmap colour scales leave out far outliers (over 3 interquartile ranges outside the quartiles), so one
outlier does not darken every other cell; cells outside the scale are hatched. --metrics limits the
heatmaps, difference maps and profiles to the named metrics; the estimator's diagnostics (K,
structure_agreement, structure_objective, runner_up_objective, runner_up_K, probe_accuracy_std) and the
warned_manifolds flag are drawn only when named there.

The results table may hold several analysis settings side by side (e.g. `mftma analyze --n-t 100` after a
default analysis); figures draw one: choose it with --settings (a settings key from the table's `settings`
column, or values such as `n_t=100 seed=0`). A table with several settings and no --settings is refused.

The best epoch is the analysed epoch with the highest test accuracy. Figures are 7 in wide with text of
at least 8 pt, and every file is written atomically.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw heatmaps, difference maps, layer profiles, curves and rollback maps of a run",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory analysed by `mftma analyze`")
    add_option(parser, "--out", "output folder (default: RUN_DIR/results/figures)", metavar="DIR")
    parser.add_argument("--metrics", nargs="+", metavar="METRIC",
                        help="metrics drawn as heatmaps, difference maps and profiles, e.g. capacity radius "
                             "(default: every analysed metric except the estimator's diagnostics)")
    parser.add_argument("--formats", nargs="+", default=["png", "pdf"], metavar="FORMAT",
                        help="file formats to write, any matplotlib format (default: png pdf)")
    add_option(parser, "--no-progress", "do not list the written figures")
    parser.add_argument("--settings", nargs="+", metavar="KEY|NAME=VALUE",
                        help="analysis settings to draw: a settings key, or values of kappa, n_t, n_reps, seed, "
                             "probe_C, probe_folds (needed when the table holds several)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.pipeline.figures import plot_run

    written = plot_run(args.run_dir, out_dir=args.out, formats=args.formats, progress=args.progress,
                       settings=parse_settings(args.settings), metrics=args.metrics)
    print(f"{len(written)} files written")
    return 0


def parse_settings(words):
    """``--settings`` words as :func:`~mftma.pipeline.figures.run_results` takes them: None, a key or a dict.

    Examples
    --------
    >>> parse_settings(["n_t=100", "kappa=0.5"])
    {'n_t': 100, 'kappa': 0.5}
    >>> parse_settings(["3fa1c2d4e5f60718"])
    '3fa1c2d4e5f60718'
    """
    import yaml

    from mftma.errors import InputError

    if not words:
        return None
    if len(words) == 1 and "=" not in words[0]:
        return words[0]
    pairs = [word.split("=", 1) for word in words]
    if any(len(pair) != 2 for pair in pairs):
        raise InputError(f"--settings takes one key or NAME=VALUE pairs, got {words}")
    return {name: yaml.safe_load(value) for name, value in pairs}
