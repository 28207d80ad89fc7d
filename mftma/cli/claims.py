"""``mftma claims RUN_DIR [RUN_DIR ...]``: the four claims with intervals over existing analysed runs."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Evaluate the four claims of the memorization study (docs/method.md §6.2) on analysed run directories
(each with results/ from `mftma analyze` and, for claim (d), a rollback table from `mftma rollback`),
treating the runs as seeds of one setting. For each claim: its statistics per run (margins: the
quantity compared with a threshold, positive when that condition holds), their mean, the two-sided 95 %
Student t interval over the runs, and the verdict on the interval: held (the interval of every
statistic lies above 0), not held (some interval lies below 0) or undecided (an interval contains 0, or
fewer than 2 runs). The best partial-rollback gains (last k and first k blocks) are summarised the same way.
Claims (a) and (b) compare permuted with shuffled manifolds; a run analysed without the shuffled
grouping reports them as not evaluable, with the command to run.

Prints the JSON (the `claims`, `rollback` and `runs` sections of the quickstart's summary.json) and writes
it to --out if given. A results table holding several analysis settings side by side is refused unless
--settings selects one (values such as `n_t=200` select the same settings in every run; a key is
specific to one run's table).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "claims", help="the four claims with per-seed statistics, 95 %% intervals and verdicts over run directories",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="analysed run directories (one per seed)")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON to FILE")
    parser.add_argument("--settings", nargs="+", metavar="KEY|NAME=VALUE",
                        help="analysis settings to evaluate: values of kappa, n_t, n_reps, seed, ... "
                             "(e.g. n_t=200), or a settings key")
    parser.set_defaults(func=run)


def run(args) -> int:
    import json

    from mftma.atomic import atomic_write_text
    from mftma.cli.plot import parse_settings
    from mftma.pipeline.quickstart import summarize_run_dirs

    summary = summarize_run_dirs(args.run_dirs, settings=parse_settings(args.settings))
    text = json.dumps(summary, indent=2, allow_nan=False)
    if args.out:
        atomic_write_text(args.out, text)
    print(text)
    return 0


def print_verdicts(summary: dict) -> None:
    """One line per claim and rollback direction: verdict, mean margins and their intervals."""
    for key in "abcd":
        claim = summary["claims"][key]
        margins = ", ".join(f"{name} {_estimate(statistic)}" for name, statistic in claim["statistics"].items())
        print(f"claim ({key}) {claim['verdict']} over {summary['seeds']} seed(s): {claim['claim']} [{margins}]")
    for direction, gain in summary["rollback"].items():
        print(f"rollback gain, {direction} k blocks: {_estimate(gain)} ({gain['verdict']} that it is > 0)")


def _estimate(statistic: dict) -> str:
    if statistic["mean"] is None:
        return "undefined"
    if statistic["interval"] is None:
        return f"{statistic['mean']:+.3f}"
    low, high = statistic["interval"]
    return f"{statistic['mean']:+.3f} (95 % CI {low:+.3f} to {high:+.3f})"
