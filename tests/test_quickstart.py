import argparse
import itertools
import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mftma.cache import ActivationCache
from mftma.cli import quickstart as quickstart_cli
from mftma.errors import InputError
from mftma.experiments.run import Run
from mftma.pipeline import quickstart as quickstart_module
from mftma.pipeline.claims import evaluate_claims
from mftma.pipeline.quickstart import quickstart, summarize
from mftma.pipeline.results import load_results
from mftma.pipeline.rollback import load_rollback

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
    assert summary["true_best"] == {"epoch": summary["best_epoch"], "test_accuracy": summary["test_accuracy"]["best"],
                                    "checkpointed": True, "analysed_minus_true_epochs": 0, "test_accuracy_gap": 0.0}
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


def test_summary_reports_the_numbers_of_the_runs_tables(ci_quickstart):
    summary = json.loads((ci_quickstart / "summary.json").read_text())
    run = Run(ci_quickstart / "run")
    accuracy = run.metrics().set_index("epoch")["acc_test"]
    best, last = summary["best_epoch"], summary["last_epoch"]
    assert best == accuracy.loc[summary["analysed_epochs"]].idxmax()
    assert summary["test_accuracy"] == {"best": accuracy[best], "last": accuracy[last]}
    results, rollback = load_results(run.path), load_rollback(run.path)
    value = results.set_index(["layer", "epoch", "subset", "metric"])["value"]
    for layer, by_epoch in summary["geometry"].items():
        for name, epoch in (("best", best), ("last", last)):
            for subset, numbers in by_epoch[name].items():
                assert numbers == {metric: round(value[layer, epoch, subset, metric], 6) for metric in numbers}
    final = rollback[(rollback["k"] == 0) & (rollback["subset"] == "test")]["value"]
    assert {summary["rollback"][d]["test_accuracy_final"] for d in ("last", "first")} == {round(final.iloc[0], 6)}
    claims = json.loads(json.dumps(evaluate_claims(results, rollback, best, last)))
    assert summary["claims"] == claims


def test_every_output_file_holds_the_run(ci_quickstart):
    summary = json.loads((ci_quickstart / "summary.json").read_text())
    run = Run(ci_quickstart / "run")
    assert list(run.metrics()["epoch"]) == list(range(summary["last_epoch"] + 1))
    results = load_results(run.path)
    assert sorted(results["epoch"].unique()) == summary["analysed_epochs"]
    csv = pd.read_csv(run.path / "results" / "results.csv")
    np.testing.assert_allclose(csv["value"], results["value"], rtol=1e-12)
    rollback = load_rollback(run.path)
    np.testing.assert_allclose(pd.read_csv(run.path / "results" / "rollback.csv")["value"], rollback["value"])
    with ActivationCache(run.path / "activations.h5") as cache:
        assert cache.epochs == summary["analysed_epochs"]
        assert {"input", summary["final_layer"]} <= set(cache.layers)
    figures = summary["files"]["figures"]
    assert "run/results/figures/heatmap_capacity.png" in figures and "run/results/figures/rollback.png" in figures
    for path in figures:
        pixels = plt.imread(ci_quickstart / path)
        assert pixels.shape[1] > 1000 and len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20, path


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


LAYERS = ["input", "conv1", "conv2", "conv3", "fc", "logits"]  # 5 blocks: early conv1, conv2; final fc, logits
BEST, LAST = 5, 20


class MetricsRun:
    """A finished run as summarize() sees it: test accuracy peaks at epoch 7, which was not analysed."""

    def metrics(self):
        accuracy = {epoch: 0.5 for epoch in range(LAST + 1)} | {BEST: 0.70, 7: 0.95, LAST: 0.60}
        return pd.DataFrame({"epoch": list(accuracy), "acc_test": list(accuracy.values())})

    def true_best_epoch(self):
        return 7

    def best_epoch_is_checkpointed(self):
        return True


def known_results(memorizes):
    """Capacities where (memorizes) the final layers' permuted capacity rises and test capacity falls late."""

    def capacity(subset, epoch, index):
        late = memorizes and index >= 4 and epoch == LAST
        if subset == "permuted":
            return 0.10 if late else 0.04
        return 0.04 + 0.01 * index + (0.03 if subset == "unpermuted" else -0.02) * late

    rows = [dict(run="r", epoch=epoch, layer=layer, layer_index=index, subset=subset, metric="capacity",
                 value=capacity(subset, epoch, index))
            for epoch, (index, layer), subset in itertools.product(
                (0, BEST, LAST), enumerate(LAYERS), ("unpermuted", "permuted", "restored", "test"))]
    return pd.DataFrame(rows)


def known_rollback(recovers):
    """Test accuracy after rollback: the final network 0.60, all 5 blocks at epoch BEST 0.70; (recovers) rolling
    back the last k < 5 blocks to BEST gives 0.66 + 0.01 k, anything else 0.61."""

    def accuracy(direction, k, epoch):
        if k == 0:
            return 0.60
        if epoch == BEST and (k == 5 or (recovers and direction == "last")):
            return 0.70 if k == 5 else 0.66 + 0.01 * k
        return 0.61

    rows = [dict(run="r", final_epoch=LAST, direction=direction, k=k, epoch=epoch, subset="test",
                 metric="accuracy", value=accuracy(direction, k, epoch))
            for direction, k, epoch in itertools.product(("last", "first"), range(6), (0, BEST))]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("memorizes", [True, False])
def test_summary_verdicts_on_a_run_with_a_known_outcome(memorizes):
    summary = summarize(MetricsRun(), known_results(memorizes), known_rollback(recovers=memorizes))
    assert (summary["best_epoch"], summary["last_epoch"]) == (BEST, LAST)  # 7 is better but was not analysed
    assert summary["test_accuracy"] == {"best": 0.70, "last": 0.60}
    assert summary["true_best"] == {"epoch": 7, "test_accuracy": 0.95, "checkpointed": True,
                                    "analysed_minus_true_epochs": BEST - 7, "test_accuracy_gap": 0.25}
    assert summary["final_layer"] == "logits"
    assert summary["geometry"]["logits"]["last"]["permuted"] == {"capacity": 0.10 if memorizes else 0.04}
    assert summary["geometry"]["input"]["best"]["test"] == {"capacity": 0.04}
    assert summary["rollback"]["first"] == {"gain": 0.01, "k": 1, "epoch": 0, "test_accuracy": 0.61,
                                            "test_accuracy_final": 0.6}
    assert summary["rollback"]["last"] == ({"gain": 0.1, "k": 4, "epoch": BEST, "test_accuracy": 0.7,
                                            "test_accuracy_final": 0.6} if memorizes else summary["rollback"]["first"])
    held = {key: summary["claims"][key]["held"] for key in "abcd"}
    assert held == {"a": True, "b": memorizes, "c": memorizes, "d": memorizes}


class RunWithoutItsBest:
    """A run trained before the best checkpoint was kept: epoch 51 was best, epoch 60 is the best checkpointed."""

    def true_best_epoch(self):
        return 51

    def best_epoch_is_checkpointed(self):
        return False


def test_summary_says_how_far_the_analysed_best_is_from_the_true_one():
    import pandas as pd

    accuracy = pd.Series({0: 0.1, 51: 0.8, 60: 0.75})
    report = quickstart_module._true_best(RunWithoutItsBest(), pd.DataFrame({"acc_test": accuracy}), 60)
    assert report == {"epoch": 51, "test_accuracy": 0.8, "checkpointed": False, "analysed_minus_true_epochs": 9,
                      "test_accuracy_gap": 0.05}
