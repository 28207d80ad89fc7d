"""``mftma study SPEC --out DIR``: a grid of runs (depth, shortcuts, permuted fraction, seeds) with the claims."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Run a study: every combination of a spec's data sets, depths (conv blocks), architectures (plain or
residual), permuted fractions and seeds is trained, cached at its best and its last epoch, analysed (MFTMA
capacity, radius and dimension of the unpermuted, permuted, restored, shuffled and test groupings; no
probes) and rolled back at its best epoch (every k, last and first blocks). Each run's claims and CPU
time go to DIR/<run>/study_run.json; runs go seed-major, so an interrupted study already covers every
setting, and rerunning the command resumes it (finished runs are skipped).

At the end it writes DIR/study_runs.csv (one row per run: the claims' statistics, the test accuracy lost
from best to last epoch, the fraction of it recovered by rolling back the last and the first third of the
blocks, CPU seconds) and DIR/study_settings.csv (per setting: mean CPU time, recovered fractions with
95 % t intervals over seeds and each claim's verdict: held, not held or undecided).
`python analysis/depth_study.py DIR` redraws the table and the figure from these run directories.

The shipped spec `depth_study` (mftma/configs/depth_study.yaml) runs MNIST-1D (10 000 training examples)
and 32x32 generated textures at 1, 3, 6 and 10 conv blocks, plain and residual, 20 % and 40 % permuted
labels, 3 seeds: 96 small runs, about 40 to 150 CPU seconds each.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "study", help="a grid of runs over depth, shortcuts and label noise, with the claims per setting",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="study spec: a YAML path or a shipped name (depth_study)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="runs in parallel, one CPU thread each (default: 1)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="do not print each run as it finishes")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.pipeline.study import run_study, write_study_tables

    table = run_study(args.spec, args.out, jobs=args.jobs, progress=args.progress)
    for path in write_study_tables(table, args.out):
        print(path)
    return 0
