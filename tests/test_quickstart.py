import argparse
import json
import os

import pytest

from mftma.cli import quickstart as quickstart_cli
from mftma.errors import InputError
from mftma.pipeline import quickstart as quickstart_module
from mftma.pipeline.quickstart import quickstart

SUBSETS = {"unpermuted", "permuted", "restored", "shuffled", "test"}


@pytest.fixture(scope="module")
def ci_quickstart(tmp_path_factory):
    """The CI profile run through the command line, as a user would."""
    out = tmp_path_factory.mktemp("quickstart") / "out"
    parser = argparse.ArgumentParser(prog="mftma")
    quickstart_cli.register(parser.add_subparsers())
    args = parser.parse_args(["quickstart", "--out", str(out), "--profile", "ci", "--no-progress"])
    assert args.func(args) == 0
    return out


def test_summary_has_the_numbers_of_the_issue(ci_quickstart):
    summary = json.loads((ci_quickstart / "summary.json").read_text())
    assert summary["profile"]["name"] == "ci"
    assert summary["best_epoch"] in summary["analysed_epochs"] and summary["last_epoch"] == 4
    assert set(summary["test_accuracy"]) == {"best", "last"}
    assert summary["test_accuracy"]["best"] >= summary["test_accuracy"]["last"]
    assert set(summary["geometry"]) == {"input", summary["final_layer"]} and summary["final_layer"] == "logits"
    for layer in summary["geometry"].values():
        for epoch in ("best", "last"):
            assert set(layer[epoch]) == SUBSETS
            for numbers in layer[epoch].values():
                assert set(numbers) == {"capacity", "radius", "dimension"}
                assert all(value > 0 for value in numbers.values())
    for direction in ("last", "first"):
        assert set(summary["rollback"][direction]) == {"gain", "k", "epoch", "test_accuracy", "test_accuracy_final"}
    for key in "abcd":
        claim = summary["claims"][key]
        assert set(claim) == {"claim", "test", "held", "evidence"} and isinstance(claim["held"], bool)
    stages = {"train", "cache", "analyze", "rollback", "plot"}
    assert set(summary["timings_s"]) == stages | {"total"}


def test_every_output_file_exists(ci_quickstart):
    summary = json.loads((ci_quickstart / "summary.json").read_text())
    run = ci_quickstart / "run"
    for name in ("config.yaml", "run.json", "metrics.csv", "activations.h5", "results/results.h5",
                 "results/results.csv", "results/rollback.h5", "results/rollback.csv"):
        assert (run / name).stat().st_size > 0, name
    figures = summary["files"]["figures"]
    assert "run/results/figures/heatmap_capacity.png" in figures
    assert "run/results/figures/rollback.png" in figures
    assert all((ci_quickstart / path).stat().st_size > 10_000 for path in figures)


def test_a_rerun_skips_finished_work(ci_quickstart, monkeypatch):
    figure = ci_quickstart / "run" / "results" / "figures" / "heatmap_capacity.png"
    drawn = figure.stat().st_mtime_ns
    monkeypatch.setattr("mftma.experiments.training._train_epoch",
                        lambda *args: pytest.fail("a finished run was trained again"))
    monkeypatch.setattr("mftma.cache.writer._EpochWriter._write_subset",
                        lambda *args: pytest.fail("cached activations were written again"))
    monkeypatch.setattr("mftma.pipeline.analyze.analyze_cell",
                        lambda *args: pytest.fail("analysed cells were computed again"))
    monkeypatch.setattr("mftma.pipeline.rollback._EvaluationSets.accuracies",
                        lambda *args: pytest.fail("finished rollback cells were recomputed"))
    summary = quickstart(ci_quickstart, profile="ci", progress=False)
    assert figure.stat().st_mtime_ns == drawn
    assert summary["claims"] == json.loads((ci_quickstart / "summary.json").read_text())["claims"]
    assert not [name for name in os.listdir(ci_quickstart) if name.startswith(".")]


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(InputError, match="unknown quickstart profile"):
        quickstart(tmp_path, profile="huge")


class CheckpointedRun:
    def __init__(self, epochs, best):
        self.epochs, self.best = epochs, best

    def checkpoint_epochs(self):
        return self.epochs

    def best_epoch(self):
        return self.best


@pytest.mark.parametrize("epochs, best", [(list(range(61)), 37), ([0, 1, 2, 4, 8, 16, 32, 64], 8), ([0, 1], 1)])
def test_analysed_epochs_are_log_spaced_checkpoints_with_zero_best_and_last(epochs, best):
    chosen = quickstart_module.analysed_epochs(CheckpointedRun(epochs, best), 6)
    assert {0, best, epochs[-1]} <= set(chosen) <= set(epochs)
    assert len(chosen) <= 8 and chosen == sorted(chosen)
