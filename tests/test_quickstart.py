import argparse
import itertools
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from figure_checks import assert_png_drawn

from mftma.cache import ActivationCache
from mftma.cli import main
from mftma.cli import quickstart as quickstart_cli
from mftma.errors import InputError
from mftma.experiments.config import load_config
from mftma.experiments.run import Run
from mftma.pipeline import quickstart as quickstart_module
from mftma.pipeline.claims import evaluate_claims
from mftma.pipeline.quickstart import quickstart, seeded_config, summarize
from mftma.results.table import load_results
from mftma.pipeline.rollback import load_rollback

SUBSETS = {"unpermuted", "permuted", "restored", "shuffled", "test"}


@pytest.fixture(scope="module")
def ci_quickstart(tmp_path_factory):
    """The CI profile run through the command line, as a user would, with one seed (the seeds' wiring and
    the summary over several runs are checked on stand-in runs, :func:`stand_in_quickstart`)."""
    out = tmp_path_factory.mktemp("quickstart") / "out"
    parser = argparse.ArgumentParser(prog="mftma")
    quickstart_cli.register(parser.add_subparsers())
    args = parser.parse_args(["quickstart", "--out", str(out), "--profile", "ci", "--seeds", "1", "--no-progress"])
    assert args.func(args) == 0
    return out


def read_summary(out):
    return json.loads((out / "summary.json").read_text())


def test_summary_has_the_numbers_of_the_issue(ci_quickstart):
    summary = read_summary(ci_quickstart)
    assert summary["profile"]["name"] == "ci" and summary["seeds"] == 1
    assert [run["run_dir"] for run in summary["runs"]] == ["run_0"]
    for run in summary["runs"]:
        assert run["best_epoch"] in run["analysed_epochs"] and run["last_epoch"] == 4
        assert set(run["test_accuracy"]) == {"best", "last"}
        assert run["true_best"] == {"epoch": run["best_epoch"], "test_accuracy": run["test_accuracy"]["best"],
                                    "checkpointed": True, "analysed_minus_true_epochs": 0, "test_accuracy_gap": 0.0}
        assert set(run["geometry"]) == {"input", run["final_layer"]} and run["final_layer"] == "logits"
        for layer in run["geometry"].values():
            for epoch in ("best", "last"):
                assert set(layer[epoch]) == SUBSETS
                for numbers in layer[epoch].values():
                    assert set(numbers) == {"capacity", "radius", "dimension"}
                    assert all(value > 0 for value in numbers.values())
        for direction in ("last", "first"):
            assert set(run["rollback"][direction]) == {"gain", "k", "epoch", "test_accuracy", "test_accuracy_final"}
        for key in "abcd":
            claim = run["claims"][key]
            assert set(claim) == {"claim", "test", "held", "statistics", "evidence"} and isinstance(claim["held"], bool)
        assert set(run["timings_s"]) == {"train", "cache", "analyze", "rollback", "plot", "total"}
    assert set(summary["timings_s"]) == {"total"}


@pytest.fixture
def stand_in_quickstart(tmp_path, monkeypatch):
    """``quickstart(profile="ci", seeds=3)`` with each run's pipeline replaced by a stand-in that records the
    config it was given and returns the summary of a run with a known outcome (run 1 does not memorize):
    ``(out, summary, configs by run index)``."""
    configs = {}

    def stand_in(out_dir, index, run_config, settings, progress, trained_seconds):
        assert trained_seconds is None  # the ci profile trains each run in its pipeline
        configs[index] = run_config
        memorizes = index != 1
        return {"run_dir": quickstart_module.run_dirname(index),
                "seeds": {section: getattr(run_config, section).seed for section in quickstart_module.SEEDED_SECTIONS},
                **summarize(MetricsRun(), known_results(memorizes), known_rollback(recovers=memorizes))}

    monkeypatch.setattr(quickstart_module, "_run_pipeline", stand_in)
    summary = quickstart(tmp_path, profile="ci", seeds=3, progress=False)
    return tmp_path, summary, configs


def test_the_run_of_the_quickstart_has_seed_zero(ci_quickstart):
    (run_summary,) = read_summary(ci_quickstart)["runs"]
    assert run_summary["seeds"] == dict.fromkeys(("data", "corruption", "training", "cache"), 0)
    assert Run(ci_quickstart / "run_0").config.training.seed == 0


def test_runs_differ_in_every_seed(stand_in_quickstart):
    out, summary, configs = stand_in_quickstart
    base = load_config("tiny")
    assert sorted(configs) == [0, 1, 2] and json.loads(json.dumps(summary)) == read_summary(out)
    for index, config in configs.items():
        assert config == seeded_config(base, index)
        assert summary["runs"][index]["run_dir"] == f"run_{index}"
        assert summary["runs"][index]["seeds"] == dict.fromkeys(("data", "corruption", "training", "cache"), index)


def test_seeded_runs_draw_other_examples_corruption_and_weights():
    from mftma.experiments.models import build_model
    from mftma.experiments.run import load_training_data

    configs = [seeded_config(load_config("tiny"), index) for index in range(2)]
    (first, first_record), (second, second_record) = map(load_training_data, configs)
    assert not torch.equal(first.x_train, second.x_train)
    assert not np.array_equal(first_record.permuted_mask, second_record.permuted_mask)
    weights = [build_model(config.model.name, first.input_shape, first.num_classes, width=config.model.width,
                           seed=config.training.seed, **config.model.options).state_dict() for config in configs]
    assert not all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_claims_over_seeds_summarise_the_runs_claims(stand_in_quickstart):
    _, summary, _ = stand_in_quickstart
    runs = summary["runs"]
    for key in "abcd":
        claim = summary["claims"][key]
        assert claim["held_per_seed"] == [run["claims"][key]["held"] for run in runs]
        for name, statistic in claim["statistics"].items():
            values = [run["claims"][key]["statistics"][name] for run in runs]
            assert statistic["per_seed"] == values
            if None not in values:
                assert statistic["mean"] == pytest.approx(np.mean(values), abs=1e-6)
                low, high = statistic["interval"]
                assert low <= statistic["mean"] <= high
        if claim["verdict"] == "not evaluable":  # analysed without the shuffled null baseline
            assert key in "ab" and all("'shuffled'" in reason for reason in claim["not_evaluable"])
        else:
            assert claim["verdict"] in {"held", "not held", "undecided"}
    for direction in ("last", "first"):
        gains = summary["rollback"][direction]
        assert gains["per_seed"] == [run["rollback"][direction]["gain"] for run in runs] and gains["n"] == 3


def test_summary_reports_the_numbers_of_the_runs_tables(ci_quickstart):
    for run_summary in read_summary(ci_quickstart)["runs"]:
        run = Run(ci_quickstart / run_summary["run_dir"])
        accuracy = run.metrics().set_index("epoch")["acc_test"]
        best, last = run_summary["best_epoch"], run_summary["last_epoch"]
        assert best == accuracy.loc[run_summary["analysed_epochs"]].idxmax()
        assert run_summary["test_accuracy"] == {"best": accuracy[best], "last": accuracy[last]}
        results, rollback = load_results(run.path), load_rollback(run.path)
        value = results.set_index(["layer", "epoch", "subset", "metric"])["value"]
        for layer, by_epoch in run_summary["geometry"].items():
            for name, epoch in (("best", best), ("last", last)):
                for subset, numbers in by_epoch[name].items():
                    assert numbers == {metric: round(value[layer, epoch, subset, metric], 6) for metric in numbers}
        final = rollback[(rollback["k"] == 0) & (rollback["subset"] == "test")]["value"]
        assert {run_summary["rollback"][d]["test_accuracy_final"] for d in ("last", "first")} == \
            {round(final.iloc[0], 6)}
        claims = json.loads(json.dumps(evaluate_claims(results, rollback, best, last)))
        assert run_summary["claims"] == claims


def test_claims_command_gives_the_summary_of_existing_runs(ci_quickstart, tmp_path, capsys):
    summary = read_summary(ci_quickstart)
    (run_summary,) = summary["runs"]
    run_dir = str(ci_quickstart / run_summary["run_dir"])
    assert main(["claims", run_dir]) == 0
    single = json.loads(capsys.readouterr().out)
    assert single["seeds"] == 1 and single["claims"] == summary["claims"] and single["rollback"] == summary["rollback"]
    assert single["rollback"]["last"]["interval"] is None and single["rollback"]["last"]["verdict"] == "undecided"

    run_dirs = [run_dir, str(shutil.copytree(run_dir, tmp_path / "copy"))]  # a second, identical run
    assert main(["claims", *run_dirs, "--out", str(tmp_path / "claims.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "claims.json").read_text())
    assert printed["seeds"] == 2 and [run["run_dir"] for run in printed["runs"]] == run_dirs
    expected = quickstart_module.summarize_runs([{**run_summary, "run_dir": path} for path in run_dirs])
    assert printed["claims"] == expected["claims"] and printed["rollback"] == expected["rollback"]


def test_claims_command_names_a_directory_without_results(tmp_path, capsys):
    assert main(["claims", str(tmp_path)]) == 1
    assert str(tmp_path) in capsys.readouterr().err


def test_every_output_file_holds_the_run(ci_quickstart):
    summary = read_summary(ci_quickstart)
    run_summary = summary["runs"][0]
    run = Run(ci_quickstart / "run_0")
    assert list(run.metrics()["epoch"]) == list(range(run_summary["last_epoch"] + 1))
    results = load_results(run.path)
    assert sorted(results["epoch"].unique()) == run_summary["analysed_epochs"]
    csv = pd.read_csv(run.path / "results" / "results.csv")
    np.testing.assert_allclose(csv["value"], results["value"], rtol=1e-12)
    rollback = load_rollback(run.path)
    np.testing.assert_allclose(pd.read_csv(run.path / "results" / "rollback.csv")["value"], rollback["value"])
    with ActivationCache(run.path / "activations.h5") as cache:
        assert cache.epochs == run_summary["analysed_epochs"]
        assert {"input", run_summary["final_layer"]} <= set(cache.layers)
    figures = run_summary["files"]["figures"]
    assert "run_0/results/figures/heatmap_capacity.png" in figures and "run_0/results/figures/rollback.png" in figures
    for path in figures:
        assert_png_drawn(ci_quickstart / path)


def test_a_rerun_skips_finished_work(ci_quickstart, monkeypatch):
    figure = ci_quickstart / "run_0" / "results" / "figures" / "heatmap_capacity.png"
    drawn = figure.stat().st_mtime_ns
    monkeypatch.setattr("mftma.experiments.training._train_epoch",
                        lambda *args: pytest.fail("a finished run was trained again"))
    monkeypatch.setattr("mftma.cache.writer._EpochWriter._write_selection",
                        lambda *args: pytest.fail("cached activations were written again"))
    monkeypatch.setattr("mftma.pipeline.analyze.analyze_cell",
                        lambda *args: pytest.fail("analysed cells were computed again"))
    monkeypatch.setattr("mftma.pipeline.rollback._EvaluationSets.accuracies",
                        lambda *args: pytest.fail("finished rollback cells were recomputed"))
    summary = quickstart(ci_quickstart, profile="ci", seeds=1, progress=False)
    assert figure.stat().st_mtime_ns == drawn
    assert summary["claims"] == read_summary(ci_quickstart)["claims"]
    assert not [name for name in os.listdir(ci_quickstart) if name.startswith(".")]


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(InputError, match="unknown quickstart profile"):
        quickstart(tmp_path, profile="huge")
    with pytest.raises(InputError, match="number of seeds"):
        quickstart(tmp_path, profile="ci", seeds=0)


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
        if subset == "shuffled":
            return 0.04
        if subset == "permuted":
            return 0.10 if late else 0.04
        return 0.04 + 0.01 * index + (0.03 if subset == "unpermuted" else -0.02) * late

    rows = [dict(run="r", epoch=epoch, layer=layer, layer_index=index, subset=subset, metric="capacity",
                 value=capacity(subset, epoch, index))
            for epoch, (index, layer), subset in itertools.product(
                (0, BEST, LAST), enumerate(LAYERS), ("unpermuted", "permuted", "restored", "shuffled", "test"))]
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


def test_runs_summary_over_seeds_of_a_known_outcome():
    """Three identical runs that memorize and one that does not: (a) holds in all, so it is held; the
    others hold in three of four runs with a spread that leaves them undecided or not held."""
    runs = [summarize(MetricsRun(), known_results(memorizes), known_rollback(recovers=memorizes))
            for memorizes in (True, True, True, False)]
    summary = quickstart_module.summarize_runs(runs)
    assert summary["seeds"] == 4 and summary["runs"] == runs
    assert summary["claims"]["a"]["verdict"] == "held"
    assert summary["claims"]["a"]["statistics"]["flat_margin"]["interval"] == [0.25, 0.25]
    assert summary["claims"]["b"]["held_per_seed"] == [True, True, True, False]
    rise = summary["claims"]["b"]["statistics"]["rise_margin"]
    assert rise["per_seed"] == [1.25, 1.25, 1.25, -0.25] and rise["mean"] == pytest.approx(0.875)
    assert rise["verdict"] == "undecided"  # mean 0.875, t(0.975, 3) * 0.75 / 2 = 1.193 half width
    assert summary["rollback"]["last"]["per_seed"] == [0.1, 0.1, 0.1, 0.01]
    assert summary["rollback"]["last"]["verdict"] == "held"
    assert summary["rollback"]["first"] == {"test": "gain > 0", "per_seed": [0.01] * 4, "n": 4, "mean": 0.01,
                                            "interval": [0.01, 0.01], "verdict": "held"}


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


def test_runs_trained_in_parallel_equal_runs_trained_alone(tmp_path):
    from mftma.experiments.training import train
    from mftma.pipeline.quickstart import run_dirname, training_in_background

    configs = [seeded_config(load_config("tiny").replace(training={"epochs": 3}), index) for index in range(2)]
    estimator = {"kappa": 0.0, "n_t": 5, "n_reps": 1, "seed": 0, "explained_variance": 0.9}
    with training_in_background(tmp_path / "parallel", configs, False, estimator) as (trainings, compiled):
        assert all(training.result() > 0 for training in trainings)
        assert compiled.result() is None  # the estimator's kernels compiled (or loaded) beside the training
    for index, config in enumerate(configs):
        alone = train(config, tmp_path / f"alone_{index}", progress=False)
        parallel = Run(tmp_path / "parallel" / run_dirname(index))
        columns = ["epoch", "loss", "acc_train", "acc_test"]
        pd.testing.assert_frame_equal(parallel.metrics()[columns], alone.metrics()[columns])
        assert parallel.checkpoint_epochs() == alone.checkpoint_epochs()
        assert parallel.weights_hash(3) == alone.weights_hash(3)
