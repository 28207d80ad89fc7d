"""Studies over a grid of settings (mftma.pipeline.study, `mftma study`, analysis/depth_study.py)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mftma.cli import main
from mftma.errors import DataFileError, InputError
from mftma.experiments.config import load_config
from mftma.pipeline.study import (RUN_SUMMARY_FILE, StudyRun, load_study, setting_summary, settings_markdown,
                                  study_table)

REPOSITORY = Path(__file__).resolve().parents[1]


def test_shipped_depth_study_covers_the_grid_seed_major():
    spec = load_study("depth_study")
    runs = spec.runs()
    assert len(runs) == 2 * 4 * 2 * 2 * 3
    assert len({run.name for run in runs}) == len(runs)
    assert [run.seed for run in runs] == sorted(run.seed for run in runs)  # every setting of seed 0 first
    assert {run.depth for run in runs} == {1, 3, 6, 10} and {run.fraction for run in runs} == {0.2, 0.4}


def test_run_config_sets_depth_shortcuts_fraction_and_seeds():
    spec = load_study("depth_study")
    base = load_config("depth_textures")
    config = spec.run_config(StudyRun("textures", "residual", 6, 0.2, seed=2))
    assert config.model.options["channels"] == [base.model.options["channels"][0]] * 6
    assert config.model.options["residual"] is True
    assert config.corruption.fraction == 0.2
    assert (config.data.seed, config.training.seed) == (base.data.seed + 2, base.training.seed + 2)
    plain = spec.run_config(StudyRun("textures", "plain", 6, 0.2, seed=2))
    assert plain.model.options["residual"] is False and plain.settings_hash() != config.settings_hash()


def _spec(tmp_path, **changes) -> Path:
    study = {"name": "t", "base_configs": {"mnist1d": "depth_mnist1d"}, "depths": [1], "architectures": ["plain"],
             "fractions": [0.4], "seeds": 1, "analysis": {"n_t": 10, "n_reps": 1, "seed": 0}, **changes}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"study": study}))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"widths": [1]}, "unknown keys \\['widths'\\]"),
    ({"architectures": ["dense"]}, "architectures must be among"),
    ({"depths": [0]}, "depths and seeds must be positive"),
])
def test_bad_specs_are_refused_naming_the_problem(tmp_path, changes, message):
    with pytest.raises(InputError, match=message):
        load_study(_spec(tmp_path, **changes))


def test_a_run_config_or_missing_file_is_not_a_study(tmp_path):
    with pytest.raises(InputError, match="needs a top-level 'study' section"):
        load_study("mnist1d")
    with pytest.raises(DataFileError, match="cannot read study spec"):
        load_study(tmp_path / "missing.yaml")
    with pytest.raises(DataFileError, match="no finished study run"):
        study_table(tmp_path)


def _summary(seed, margins, lost=0.1, gain_last=0.06, gain_first=0.01):
    """A study_run.json with the given margins for every statistic of claim (a) and (d)."""
    from mftma.pipeline.claims import STATISTICS

    claims = {claim: {"held": False, "statistics": {name: margins for name in names}, "evidence": {}}
              for claim, names in STATISTICS.items()}
    claims["d"]["evidence"] = {"test_accuracy_lost": lost, "gain_last_k": gain_last, "gain_first_k": gain_first}
    return {"name": f"x-s{seed}", "dataset": "mnist1d", "architecture": "plain", "depth": 3, "fraction": 0.4,
            "seed": seed, "n_blocks": 5, "best_epoch": 5, "last_epoch": 20,
            "test_accuracy": {"best": 0.8, "last": 0.7}, "claims": claims, "cpu_s": 10.0}


def test_settings_give_intervals_and_verdicts_over_seeds(tmp_path):
    for seed, margin in enumerate([0.1, 0.2, 0.15]):
        (tmp_path / f"run{seed}").mkdir()
        (tmp_path / f"run{seed}" / RUN_SUMMARY_FILE).write_text(json.dumps(_summary(seed, margin)))
    table = study_table(tmp_path)
    assert len(table) == 3 and table["recovered_last"].tolist() == pytest.approx([0.6] * 3)
    [row] = setting_summary(table).to_dict("records")
    assert row["runs"] == 3 and row["claim_a"] == "held"  # margins 0.1, 0.2, 0.15: interval above 0
    assert row["recovered_last"] == pytest.approx(0.6) and row["recovered_first"] == pytest.approx(0.1)
    # The three runs recover the same fraction: a zero-width interval.
    assert row["recovered_last_low"] == pytest.approx(0.6) and row["recovered_last_high"] == pytest.approx(0.6)
    (tmp_path / "run3").mkdir()
    (tmp_path / "run3" / RUN_SUMMARY_FILE).write_text(json.dumps(_summary(3, -0.5, lost=0.0)))
    [row] = setting_summary(study_table(tmp_path)).to_dict("records")
    assert row["claim_a"] == "undecided"  # one run far below 0 widens the interval across it
    assert row["recovered_last"] == pytest.approx(0.6)  # the run that lost nothing has no fraction
    markdown = settings_markdown(setting_summary(study_table(tmp_path))).splitlines()
    assert len(markdown) == 3 and markdown[2].startswith("| mnist1d | plain | 5 | 0.4 | 4 |")


def test_study_runs_resumes_and_its_script_draws_the_figure(tmp_path):
    base = load_config("depth_mnist1d").replace(data={"options": {"n_train": 300, "n_test": 100}},
                                                training={"epochs": 2}, cache={"M": 5, "projection_dim": 32})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base.to_dict()))
    # One seed: the grid's seed order and the summary over seeds are checked above without training.
    spec = _spec(tmp_path, base_configs={"mnist1d": str(tmp_path / "base.yaml")}, seeds=1)
    out = tmp_path / "study"
    assert main(["study", str(spec), "--out", str(out), "--no-progress"]) == 0
    runs = pd.read_csv(out / "study_runs.csv")
    assert runs["seed"].tolist() == [0] and (runs["cpu_s"] > 0).all() and (runs["n_blocks"] == 3).all()
    summary = json.loads((out / "mnist1d-plain-d1-eps40-s0" / RUN_SUMMARY_FILE).read_text())
    assert set(summary["claims"]) >= set("abcd") and summary["cpu_s"] == pytest.approx(
        sum(summary["cpu_s_by_stage"].values()), abs=0.2)
    finished = (out / "mnist1d-plain-d1-eps40-s0" / RUN_SUMMARY_FILE).stat().st_mtime_ns
    assert main(["study", str(spec), "--out", str(out), "--no-progress"]) == 0
    assert (out / "mnist1d-plain-d1-eps40-s0" / RUN_SUMMARY_FILE).stat().st_mtime_ns == finished
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- depth-study-table -->\nold table\n<!-- /depth-study-table -->\nrest\n")
    script = subprocess.run([sys.executable, str(REPOSITORY / "analysis" / "depth_study.py"), str(out),
                             "--formats", "png", "--readme", str(readme)], capture_output=True, text=True, check=True)
    assert "1 runs, 1 settings" in script.stdout
    lines = readme.read_text().splitlines()
    assert lines[:2] == ["intro", "<!-- depth-study-table -->"] and lines[-2:] == ["<!-- /depth-study-table -->", "rest"]
    assert lines[2].startswith("| data |") and lines[4].startswith("| mnist1d | plain | 3 | 0.4 | 1 |")
    assert (out / "depth_recovery.png").stat().st_size > 0 and (out / "study_settings.md").exists()
    assert not math.isnan(pd.read_csv(out / "study_settings.csv")["cpu_s"].iloc[0])
