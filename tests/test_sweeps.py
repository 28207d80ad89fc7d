"""Corruption-type and model-size experiments on the tiny run, their figures, the flawed configs and command."""
import argparse
import importlib
import json
import runpy
from pathlib import Path

import pandas as pd
import pytest

from mftma.cli import flawed
from mftma.errors import DataFileError, InputError
from mftma.experiments.config import load_config
from mftma.pipeline.flawed.experiment import check_settings, flawed_config_names, load_experiment
from mftma.pipeline.flawed.sweeps import corruption_experiment, resolve_epoch, size_sweep
from mftma.experiments.run import Run

ANALYSIS_DIR = Path(__file__).resolve().parents[1] / "analysis"
FAST = {"n_t": 20, "n_reps": 1}


@pytest.fixture(scope="module")
def scheduler():
    """One in-process Dask cluster for every analysis of this module."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def _draw(script, out, monkeypatch):
    monkeypatch.syspath_prepend(str(ANALYSIS_DIR))
    monkeypatch.setattr("sys.argv", [script, str(out), "--formats", "png"])
    runpy.run_path(str(ANALYSIS_DIR / script), run_name="__main__")
    return sorted(path.name for path in (out / "figures").iterdir())


def test_corruption_experiment_trains_each_kind_and_analyses_the_subsets_it_has(tmp_path, scheduler, monkeypatch):
    out = tmp_path / "corruptions"
    kinds = ["none", "random_labels", "shuffle_pixels"]
    geometry = corruption_experiment(load_config("tiny"), out, kinds=kinds, probes=False, scheduler=scheduler,
                                     progress=False, **FAST)
    for kind in kinds:
        assert Run(out / "runs" / kind).metadata["corruption"] == kind
    subsets = geometry.groupby("kind")["subset"].unique().map(sorted).to_dict()
    assert subsets == {"none": ["test", "unpermuted"], "random_labels": ["permuted", "restored", "shuffled", "test"],
                       "shuffle_pixels": ["test", "unpermuted"]}
    assert set(geometry["at"]) == {"final"} and set(geometry["epoch"]) == {4}
    assert set(geometry["layer"]) == {"input", "fc1", "fc2", "logits"}
    curves = pd.read_csv(out / "corruption_curves.csv")
    assert curves.groupby("kind")["epoch"].apply(list).to_dict() == {kind: [0, 1, 2, 3, 4] for kind in kinds}

    assert _draw("fig_corruption_types.py", out, monkeypatch) == ["corruption_types.json", "corruption_types.png"]
    numbers = json.loads((out / "figures" / "corruption_types.json").read_text())
    assert set(numbers) == {"layers", "at", *kinds} and len(numbers["random_labels"]["permuted"]["capacity"]) == 4


def test_size_sweep_tabulates_accuracy_and_final_layer_geometry_per_width(tmp_path, scheduler, monkeypatch):
    out = tmp_path / "sizes"
    config = load_config("tiny").replace(training={"epochs": 3})
    accuracy = size_sweep(config, out, widths=[0.5, 2], subsets=["test", "permuted"], scheduler=scheduler,
                          progress=False, **FAST)
    assert accuracy["width"].tolist() == [0.5, 2] and accuracy["num_parameters"].is_monotonic_increasing
    for row in accuracy.itertuples():
        run = Run(out / "runs" / f"width_{row.width:g}")
        assert row.num_parameters == run.metadata["model"]["num_parameters"] and row.best_epoch == run.best_epoch()
        assert row.acc_test_final == run.metrics()["acc_test"].iloc[-1]
    geometry = pd.read_csv(out / "size_geometry.csv")
    assert set(geometry["layer"]) == {"logits"} and set(geometry["subset"]) == {"test", "permuted"}
    assert set(geometry["at"]) == {"best", "final"}
    assert len(geometry.query("metric == 'radius'")) == 2 * 2 * 2  # widths x subsets x epochs

    assert _draw("fig_model_size.py", out, monkeypatch) == ["model_size.json", "model_size.png"]
    numbers = json.loads((out / "figures" / "model_size.json").read_text())
    assert numbers["num_parameters"] == accuracy["num_parameters"].tolist() and "dimension/test/final" in numbers


def test_too_small_a_subset_fails_before_any_training(tmp_path):
    config = load_config("tiny").replace(cache={"M": 30})  # 100 permuted examples: about 10 per class
    with pytest.raises(InputError, match="fewer than M=30"):
        size_sweep(config, tmp_path, widths=[1], progress=False)
    with pytest.raises(InputError, match="fewer than M=30"):
        corruption_experiment(config, tmp_path, kinds=["permute"], progress=False)
    assert not (tmp_path / "runs").exists()


def test_epochs_are_named_or_checkpointed(tmp_path):
    from mftma.experiments.training import train

    run = train(load_config("tiny").replace(training={"epochs": 2}), tmp_path / "run", progress=False)
    assert resolve_epoch(run, "final") == 2 and resolve_epoch(run, "best") == run.best_epoch()
    assert resolve_epoch(run, 1) == 1
    with pytest.raises(InputError, match="'best', 'final'.*got 7"):
        resolve_epoch(run, 7)


@pytest.mark.parametrize("name", ["flawed_concepts", "flawed_randomize", "flawed_corruptions", "flawed_gradients",
                                  "flawed_sizesweep", "flawed_sizesweep_full"])
def test_shipped_flawed_configs_hold_valid_settings_for_their_experiment(name):
    assert name in flawed_config_names()
    config, settings = load_experiment(name)
    module, function = flawed.EXPERIMENTS[name.removeprefix("flawed_").removesuffix("_full")][:2]
    experiment = getattr(importlib.import_module(f"mftma.pipeline.flawed.{module}"), function)
    assert check_settings(experiment, settings) == settings and config.training.epochs >= 1


def test_bad_flawed_configs_are_clear_errors(tmp_path):
    with pytest.raises(DataFileError, match="not found"):
        load_experiment(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("flawed: [1, 2]\n")
    with pytest.raises(InputError, match="'flawed' section must be a mapping"):
        load_experiment(tmp_path / "list.yaml")
    with pytest.raises(InputError, match=r"unknown key\(s\) \['widht'\].*allowed: \['widths'"):
        check_settings(size_sweep, {"widht": [1]})


def _parser():
    parser = argparse.ArgumentParser(prog="mftma")
    flawed.register(parser.add_subparsers(dest="command"))
    return parser


def test_command_help_explains_every_experiment_and_runs_one(tmp_path, capsys):
    for name in flawed.EXPERIMENTS:
        with pytest.raises(SystemExit):
            _parser().parse_args(["flawed", name, "--help"])
        text = capsys.readouterr().out
        assert "--out DIR" in text and "flawed` section" in text and "analysis/fig_" in text
    config = tmp_path / "gradients.yaml"
    config.write_text((Path(flawed.__file__).parents[1] / "configs" / "tiny.yaml").read_text()
                      + "flawed: {max_epoch: 1}\n")
    args = _parser().parse_args(["flawed", "gradients", str(config), "--out", str(tmp_path / "g"), "--no-progress"])
    assert args.func(args) == 0
    assert "wrote gradients.csv" in capsys.readouterr().out
    assert sorted(set(pd.read_csv(tmp_path / "g" / "gradients.csv")["epoch"])) == [0, 1]
