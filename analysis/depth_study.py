"""The depth study's table and figure, regenerated from its run directories (`mftma study depth_study`).

Reads every finished run of STUDY_DIR (DIR/<run>/study_run.json) and writes into --out (default STUDY_DIR):
study_runs.csv (one row per run), study_settings.csv and study_settings.md (per setting: test accuracy
at the best and last epoch, the fraction of the lost test accuracy recovered by rolling back the last and
the first third of the blocks with 95 % t intervals over seeds, each claim's verdict, CPU seconds per
run) and depth_recovery.<format> (recovered fraction against depth, last third vs first third).
With --readme FILE, the table also replaces the lines between the markers
`<!-- depth-study-table -->` and `<!-- /depth-study-table -->` of FILE (the project's README).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import _script


def run() -> None:
    args = _parse()
    import matplotlib.pyplot as plt

    from mftma.atomic import atomic_write_text
    from mftma.pipeline.study import setting_summary, settings_markdown, study_table, write_study_tables
    from mftma.plotting import save_figure
    from mftma.plotting.study import recovery_against_depth

    out = Path(args.out or args.study_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = study_table(args.study_dir)
    settings = setting_summary(table)
    paths = write_study_tables(table, out)
    paths.append(out / "study_settings.md")
    atomic_write_text(paths[-1], settings_markdown(settings))
    if args.readme:
        _replace_table(Path(args.readme), settings_markdown(settings))
        paths.append(Path(args.readme))
    figure = recovery_against_depth(settings)
    paths += save_figure(figure, out / "depth_recovery", args.formats)
    plt.close(figure)
    print(f"{len(table)} runs, {len(settings)} settings, {table['cpu_s'].sum() / 3600:.2f} CPU hours in all")
    for path in paths:
        print(path)


def _replace_table(path: Path, table: str) -> None:
    from mftma.atomic import atomic_write_text
    from mftma.errors import InputError

    start, end = "<!-- depth-study-table -->\n", "<!-- /depth-study-table -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise InputError(f"{path} has no {start.strip()} ... {end} markers to put the table between")
    head, rest = text.split(start, 1)
    atomic_write_text(path, head + start + table + end + rest.split(end, 1)[1])


def _parse():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="output folder of `mftma study`")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: STUDY_DIR)")
    parser.add_argument("--readme", metavar="FILE",
                        help="also put the settings table between the depth-study-table markers of FILE")
    parser.add_argument("--formats", nargs="+", default=["png", "pdf"], metavar="FORMAT",
                        help="figure formats (default: png pdf)")
    return parser.parse_args()


if __name__ == "__main__":
    _script.main(run)
