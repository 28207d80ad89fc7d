"""Studies over a grid of run settings: where memorization lives as networks get deeper.

A study spec (YAML, e.g. the shipped ``depth_study``) names base run configs per data set and the grid:
``depths`` (conv blocks; every network adds ``fc1`` and ``logits``), ``architectures`` (``plain`` or
``residual``: a shortcut around every conv block), ``fractions`` (the permuted fraction ε) and ``seeds``
(run i adds i to every seed of the config, as the quickstart does). Each run is trained, cached at its
best and its last epoch, analysed (MFTMA capacity, radius and dimension of the five groupings; no probes)
and rolled back at its best epoch (every k, last and first blocks), then summarised with the four claims
(:func:`mftma.pipeline.quickstart.summarize`) into ``RUN_DIR/study_run.json`` with the CPU time it took.
Everything resumes: a finished run is skipped, an interrupted one continues where its stages stopped.

:func:`study_table` gathers the finished runs into one row each; :func:`setting_summary` gives every
setting's claim statistics over seeds with intervals and verdicts (:mod:`mftma.pipeline.verdicts`).
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from mftma.errors import DataFileError, InputError

#: Summary of a finished run, inside its run directory.
RUN_SUMMARY_FILE = "study_run.json"
#: Tables written by :func:`write_study_tables`: one row per run, one row per setting.
RUNS_CSV, SETTINGS_CSV = "study_runs.csv", "study_settings.csv"
#: Running CPU-time record of a run's stages (kept across interruptions), inside its run directory.
CPU_FILE = "study_cpu.json"
ARCHITECTURES = ("plain", "residual")
#: Columns that identify a setting (a run without its seed).
SETTING_COLUMNS = ("dataset", "architecture", "depth", "fraction")
_SPEC_KEYS = {"name", "base_configs", "depths", "architectures", "fractions", "seeds", "analysis"}
_ANALYSIS_KEYS = {"n_t", "n_reps", "seed"}


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: a setting and a seed index."""

    dataset: str
    architecture: str
    depth: int
    fraction: float
    seed: int

    @property
    def name(self) -> str:
        """Folder name, e.g. ``mnist1d-residual-d6-eps40-s2``."""
        return (f"{self.dataset}-{self.architecture}-d{self.depth}-eps{round(self.fraction * 100):02d}"
                f"-s{self.seed}")


@dataclass(frozen=True)
class StudySpec:
    """A parsed study spec (see the module docstring)."""

    name: str
    base_configs: dict
    depths: tuple
    architectures: tuple
    fractions: tuple
    seeds: int
    analysis: dict

    def runs(self) -> list[StudyRun]:
        """Every run, seed-major (all settings of seed 0 first), so a partial study covers every setting."""
        grid = itertools.product(range(self.seeds), self.base_configs, self.architectures, self.depths,
                                 self.fractions)
        return [StudyRun(dataset, architecture, depth, fraction, seed)
                for seed, dataset, architecture, depth, fraction in grid]

    def run_config(self, run: StudyRun):
        """The run config of ``run``: its base config with depth, shortcuts, ε and seeds set."""
        from mftma.experiments.config import load_config
        from mftma.pipeline.quickstart import seeded_config

        base = load_config(self.base_configs[run.dataset])
        channels = base.model.options.get("channels")
        if not channels:
            raise InputError(f"base config {self.base_configs[run.dataset]!r} of the study must give "
                             "model.options.channels (its width per conv block)")
        options = {**base.model.options, "channels": [channels[0]] * run.depth,
                   "residual": run.architecture == "residual"}
        config = base.replace(model={"options": options}, corruption={"fraction": run.fraction})
        return seeded_config(config, run.seed)


def load_study(path_or_name) -> StudySpec:
    """Read a study spec: a YAML path or a shipped name (``depth_study``).

    Raises
    ------
    DataFileError
        Missing or unreadable file.
    InputError
        Not a study spec, unknown keys or invalid values (naming them).
    """
    from mftma.experiments.config import config_path

    path = config_path(path_or_name)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DataFileError(f"cannot read study spec {path}: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("study"), dict):
        raise InputError(f"{path} is not a study spec: it needs a top-level 'study' section")
    spec = document["study"]
    unknown = sorted(set(spec) - _SPEC_KEYS) + sorted(set(spec.get("analysis", {})) - _ANALYSIS_KEYS)
    missing = sorted(_SPEC_KEYS - set(spec))
    if unknown or missing:
        raise InputError(f"study spec {path}: unknown keys {unknown}, missing keys {missing}")
    if not set(spec["architectures"]) <= set(ARCHITECTURES):
        raise InputError(f"study spec {path}: architectures must be among {ARCHITECTURES}, "
                         f"got {spec['architectures']}")
    if any(int(depth) < 1 for depth in spec["depths"]) or int(spec["seeds"]) < 1:
        raise InputError(f"study spec {path}: depths and seeds must be positive")
    return StudySpec(name=str(spec["name"]), base_configs=dict(spec["base_configs"]),
                     depths=tuple(int(depth) for depth in spec["depths"]),
                     architectures=tuple(spec["architectures"]),
                     fractions=tuple(float(fraction) for fraction in spec["fractions"]),
                     seeds=int(spec["seeds"]), analysis=dict(spec["analysis"]))


def run_study(spec, out_dir, *, jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) every run of a study into ``OUT/<run name>/`` and return :func:`study_table`.

    Parameters
    ----------
    spec : StudySpec, str or Path
        A study spec or its path/shipped name.
    out_dir : str or Path
        Output folder; one run directory per run.
    jobs : int
        Runs in parallel (processes, one CPU thread each).
    progress : bool
        Print each run as it finishes.
    """
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    spec = spec if isinstance(spec, StudySpec) else load_study(spec)
    out_dir = Path(out_dir)
    pending = [run for run in spec.runs() if not (out_dir / run.name / RUN_SUMMARY_FILE).exists()]
    if jobs < 1:
        raise InputError(f"jobs must be at least 1, got {jobs}")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(study_run, spec, run, out_dir / run.name) for run in pending]
        for done, future in enumerate(futures, start=1):
            summary = future.result()
            if progress:
                print(f"[study] {done}/{len(pending)} {summary['name']}: {summary['cpu_s']:.0f} s CPU, "
                      f"best epoch {summary['best_epoch']}, test accuracy "
                      f"{summary['test_accuracy']['best']:.3f} -> {summary['test_accuracy']['last']:.3f}",
                      flush=True)
    return study_table(out_dir)


def study_run(spec: StudySpec, run: StudyRun, run_dir) -> dict:
    """Train, cache, analyse and roll back one run (resuming), and write its ``study_run.json``."""
    import torch

    from mftma.atomic import atomic_write_text
    from mftma.cache import cache_activations
    from mftma.experiments.training import train
    from mftma.pipeline.analyze import analyze_run
    from mftma.pipeline.quickstart import summarize
    from mftma.pipeline.rollback import rollback
    from mftma.results.selections import layer_order

    torch.set_num_threads(1)
    run_dir = Path(run_dir)
    clock = _CpuClock(run_dir)
    trained = clock("train", train, spec.run_config(run), run_dir, progress=False)
    epochs = sorted({trained.best_epoch(), trained.checkpoint_epochs()[-1]})
    clock("cache", cache_activations, trained, epochs=epochs, progress=False)
    results = clock("analyze", analyze_run, trained.path, epochs=epochs, probes=False, processes=False,
                    n_workers=1, progress=False, **spec.analysis)
    table = clock("rollback", rollback, trained, epochs=[trained.best_epoch()])
    summary = {"name": run.name, **{key: getattr(run, key) for key in (*SETTING_COLUMNS, "seed")},
               "n_blocks": len([layer for layer in layer_order(results) if layer != "input"]),
               **summarize(trained, results, table), "cpu_s": round(sum(clock.seconds.values()), 1),
               "cpu_s_by_stage": clock.seconds}
    atomic_write_text(run_dir / RUN_SUMMARY_FILE, json.dumps(summary, indent=2, allow_nan=False))
    return summary


class _CpuClock:
    """Runs stages, adding each one's CPU time (this process) to ``RUN_DIR/study_cpu.json``.

    The record survives interruptions, so a resumed run reports the CPU time of all its attempts.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / CPU_FILE
        self.seconds = json.loads(self.path.read_text()) if self.path.exists() else {}

    def __call__(self, name: str, function, *args, **kwargs):
        from mftma.atomic import atomic_write_text

        began = time.process_time()
        result = function(*args, **kwargs)
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.process_time() - began, 2)
        atomic_write_text(self.path, json.dumps(self.seconds, indent=2))
        return result


def _claim_columns() -> list[tuple[str, str]]:
    """(claim, statistic) of every claim statistic; the study table's columns ``<claim>_<statistic>``."""
    from mftma.pipeline.claims import STATISTICS

    return [(claim, statistic) for claim, names in STATISTICS.items() for statistic in names]


def study_table(out_dir) -> pd.DataFrame:
    """One row per finished run of a study folder (runs without ``study_run.json`` are left out).

    Columns: the setting (``dataset``, ``architecture``, ``depth``, ``fraction``), ``seed``, ``n_blocks``
    (L, analysed blocks besides the input), ``best_epoch``, ``last_epoch``, ``acc_best``, ``acc_last``,
    ``lost`` (test accuracy lost from best to last epoch), ``recovered_last`` and ``recovered_first`` (the
    best gain of rolling back the last, resp. first, k <= ceil(L/3) blocks to the best epoch, divided by
    ``lost``; NaN when nothing was lost), ``held_a`` ... ``held_d``, every claim statistic
    (``a_flat_margin``, ...) and ``cpu_s``.

    Raises
    ------
    DataFileError
        No finished run in ``out_dir``.
    """
    rows = [_row(json.loads(path.read_text())) for path in sorted(Path(out_dir).glob(f"*/{RUN_SUMMARY_FILE}"))]
    if not rows:
        raise DataFileError(f"no finished study run in {out_dir} (run `mftma study SPEC --out {out_dir}`)")
    return pd.DataFrame(rows).sort_values([*SETTING_COLUMNS, "seed"], ignore_index=True)


def _row(summary: dict) -> dict:
    claims = summary["claims"]
    rollback = claims["d"]["evidence"]
    lost = rollback.get("test_accuracy_lost")
    recovered = {direction: (rollback[f"gain_{direction}_k"] / lost if lost and lost > 0 else float("nan"))
                 for direction in ("last", "first")} if "test_accuracy_lost" in rollback else \
        {"last": float("nan"), "first": float("nan")}
    statistics = {f"{claim}_{name}": _float(claims[claim]["statistics"][name]) for claim, name in _claim_columns()}
    return {
        **{key: summary[key] for key in (*SETTING_COLUMNS, "seed")},
        "n_blocks": summary["n_blocks"],
        "best_epoch": summary["best_epoch"], "last_epoch": summary["last_epoch"],
        "acc_best": summary["test_accuracy"]["best"], "acc_last": summary["test_accuracy"]["last"],
        "lost": _float(lost), "recovered_last": recovered["last"], "recovered_first": recovered["first"],
        **{f"held_{claim}": bool(claims[claim]["held"]) for claim in "abcd"},
        **statistics, "cpu_s": summary["cpu_s"],
    }


def _float(value) -> float:
    return float("nan") if value is None else float(value)


def setting_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting: runs, mean CPU time, mean test accuracies, recovered fractions and every claim's verdict.

    Each claim's verdict comes from its statistics' 95 % t intervals over seeds
    (:func:`mftma.pipeline.verdicts.summarize_statistic`, :func:`~mftma.pipeline.verdicts.combine_verdicts`);
    ``recovered_last`` and ``recovered_first`` get their mean and interval bounds (``_low``, ``_high``).
    """
    from mftma.pipeline.verdicts import combine_verdicts, summarize_statistic

    rows = []
    for setting, group in table.groupby(list(SETTING_COLUMNS), sort=True):
        row = dict(zip(SETTING_COLUMNS, setting))
        row.update(runs=len(group), n_blocks=int(group["n_blocks"].iloc[0]), cpu_s=round(group["cpu_s"].mean(), 1),
                   acc_best=group["acc_best"].mean(), acc_last=group["acc_last"].mean(), lost=group["lost"].mean())
        for column in ("recovered_last", "recovered_first"):
            values = [None if pd.isna(value) else float(value) for value in group[column]]
            summary = summarize_statistic(values)
            interval = summary["interval"] or (float("nan"), float("nan"))
            mean = float("nan") if summary["mean"] is None else summary["mean"]
            row.update({column: mean, f"{column}_low": interval[0], f"{column}_high": interval[1]})
        for claim in "abcd":
            names = [name for key, name in _claim_columns() if key == claim]
            verdicts = [summarize_statistic([None if pd.isna(value) else float(value)
                                             for value in group[f"{claim}_{name}"]])["verdict"] for name in names]
            row[f"claim_{claim}"] = combine_verdicts(verdicts)
        rows.append(row)
    return pd.DataFrame(rows)


def write_study_tables(table: pd.DataFrame, out_dir) -> list[Path]:
    """Write ``table`` (:func:`study_table`) and its :func:`setting_summary` as CSV into ``out_dir``."""
    from mftma.atomic import atomic_write_text

    paths = [Path(out_dir) / RUNS_CSV, Path(out_dir) / SETTINGS_CSV]
    for path, frame in zip(paths, (table, setting_summary(table))):
        atomic_write_text(path, frame.to_csv(index=False))
    return paths


def settings_markdown(settings: pd.DataFrame) -> str:
    """The settings table (:func:`setting_summary`) as a Markdown table, one line per setting."""
    header = ("| data | architecture | L | ε | runs | test acc. best → last | recovered: last third | "
              "first third | (a) | (b) | (c) | (d) | CPU s/run |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in settings.itertuples():
        lines.append(
            f"| {row.dataset} | {row.architecture} | {row.n_blocks} | {row.fraction:g} | {row.runs} | "
            f"{row.acc_best:.3f} → {row.acc_last:.3f} | {_estimate(row, 'recovered_last')} | "
            f"{_estimate(row, 'recovered_first')} | {row.claim_a} | {row.claim_b} | {row.claim_c} | "
            f"{row.claim_d} | {row.cpu_s:.0f} |")
    return "\n".join(lines) + "\n"


def _estimate(row, column: str) -> str:
    mean, low, high = (getattr(row, name) for name in (column, f"{column}_low", f"{column}_high"))
    if pd.isna(mean):
        return "–"
    return f"{mean:.2f}" if pd.isna(low) else f"{mean:.2f} [{low:.2f}, {high:.2f}]"
