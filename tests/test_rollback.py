import argparse
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from figure_checks import assert_png_drawn

from mftma.cache import ActivationCache, cache_activations
from mftma.cache.features import CachedSamples
from mftma.cli import rollback as rollback_cli
from mftma.errors import DataFileError, InputError
from mftma.experiments.config import load_config
from mftma.experiments.models import LayeredModel
from mftma.experiments.run import Run
from mftma.experiments.training import train
from mftma.plotting import rollback_heatmaps
from mftma.pipeline import rollback as rollback_module
from mftma.pipeline.rollback import (
    GEOMETRY_COLUMNS,
    ROLLBACK_COLUMNS,
    default_rollback_epochs,
    load_rollback,
    load_rollback_geometry,
    rollback,
    rollback_geometry,
    rolled_back_blocks,
    rolled_back_state,
    save_rollback,
)

METRIC_COLUMNS = {"test": "acc_test", "unpermuted": "acc_unpermuted", "permuted": "acc_permuted",
                  "restored": "acc_permuted_true"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The shipped tiny config: an MLP with blocks fc1, fc2, logits trained for 4 epochs on 200 examples."""
    return train(load_config("tiny"), tmp_path_factory.mktemp("rollback") / "run", progress=False)


def _fresh_copy(run, tmp_path):
    """A copy of the run's training files without any results."""
    copy = shutil.copytree(run.path, tmp_path / "run", ignore=shutil.ignore_patterns("results"))
    return Run(copy)


def accuracies(table, direction, k, epoch):
    rows = table[(table["direction"] == direction) & (table["k"] == k) & (table["epoch"] == epoch)]
    return dict(zip(rows["subset"], rows["value"]))


def test_rolling_back_all_blocks_reproduces_the_epochs_accuracy_exactly(tiny_run):
    table = rollback(tiny_run, epochs=[0, 2])
    metrics = tiny_run.metrics().set_index("epoch")
    n_blocks = len(tiny_run.build_model().blocks)
    for direction in ("last", "first"):
        for epoch in (0, 2):
            expected = {subset: metrics.loc[epoch, column] for subset, column in METRIC_COLUMNS.items()}
            assert accuracies(table, direction, n_blocks, epoch) == expected


def test_k0_is_the_final_network(tiny_run):
    table = rollback(tiny_run, ks=[1], epochs=[0])
    final = tiny_run.metrics().set_index("epoch").loc[tiny_run.checkpoint_epochs()[-1]]
    assert accuracies(table, "last", 0, 0) == {subset: final[column] for subset, column in METRIC_COLUMNS.items()}
    assert set(table.columns) == set(ROLLBACK_COLUMNS)


def test_first_and_last_k_select_the_right_blocks():
    blocks = ["conv1", "conv2", "fc", "logits"]
    assert rolled_back_blocks(blocks, "last", 0) == []
    assert rolled_back_blocks(blocks, "last", 1) == ["logits"]
    assert rolled_back_blocks(blocks, "first", 3) == ["conv1", "conv2", "fc"]
    with pytest.raises(InputError, match="0..4"):
        rolled_back_blocks(blocks, "last", 5)
    with pytest.raises(InputError, match="direction"):
        rolled_back_blocks(blocks, "middle", 1)


def test_rolled_back_state_swaps_parameters_and_buffers_of_exactly_those_blocks():
    def model(seed):
        torch.manual_seed(seed)
        network = LayeredModel([("a", nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))), ("b", nn.Linear(4, 2))])
        network.train()(torch.randn(8, 3))  # moves the batch-norm running statistics
        return network.state_dict()

    final, source = model(0), model(1)
    mixed = rolled_back_state(final, source, rolled_back_blocks(["a", "b"], "first", 1))
    swapped = {key for key in mixed if mixed[key] is source[key]}
    assert swapped == {"blocks.a.0.weight", "blocks.a.0.bias", "blocks.a.1.weight", "blocks.a.1.bias",
                       "blocks.a.1.running_mean", "blocks.a.1.running_var", "blocks.a.1.num_batches_tracked"}
    assert all(mixed[key] is final[key] for key in mixed if key.startswith("blocks.b."))
    with pytest.raises(DataFileError, match="different state-dict entries"):
        rolled_back_state(final, {key: final[key] for key in list(final)[1:]}, ["a"])


def test_rerun_computes_only_missing_cells_and_stale_rows_are_redone(tiny_run, tmp_path, monkeypatch):
    tiny_run = _fresh_copy(tiny_run, tmp_path)  # other tests leave rollback rows in the shared run
    rollback(tiny_run, epochs=[0, 1])
    calls = []
    evaluate = rollback_module._EvaluationSets.accuracies
    monkeypatch.setattr(rollback_module._EvaluationSets, "accuracies",
                        lambda self, model: calls.append(1) or evaluate(self, model))
    table = rollback(tiny_run, epochs=[0, 1, 3], directions=["last"])
    assert len(calls) == 4  # k = 0..3 for epoch 3 only
    assert set(table["direction"]) == {"last"} and set(table["epoch"]) == {0, 1, 3} and len(table) == 3 * 4 * 4
    saved = load_rollback(tiny_run.path)
    assert len(saved) == len(table) + 2 * 4 * 4  # direction "first" of epochs 0 and 1 is kept
    pd.testing.assert_frame_equal(saved[saved["direction"] == "last"].reset_index(drop=True), table)

    save_rollback(tiny_run.path, saved.assign(source="other"))  # as if computed from other checkpoints
    calls.clear()
    assert len(rollback(tiny_run, epochs=[0], directions=["last"])) == 4 * 4
    assert len(calls) == 4 and len(load_rollback(tiny_run.path)) == 4 * 4


def test_default_epochs_are_checkpoints_before_the_final_one(tiny_run):
    epochs = default_rollback_epochs(tiny_run)
    assert 0 in epochs and set(epochs) <= set(tiny_run.checkpoint_epochs()[:-1])
    assert epochs == sorted(epochs)


def test_bad_requests_raise_clear_errors(tiny_run, tmp_path):
    with pytest.raises(DataFileError, match="no checkpoint for epoch"):
        rollback(tiny_run, epochs=[7])
    with pytest.raises(InputError, match="k must be in"):
        rollback(tiny_run, ks=[9], epochs=[0])
    with pytest.raises(DataFileError, match="no rollback table"):
        load_rollback(tmp_path)
    assert load_rollback(tmp_path, missing_ok=True).empty


@pytest.fixture(scope="module")
def cached_run(tiny_run):
    cache_activations(tiny_run, progress=False)
    return tiny_run


def test_geometry_uses_the_cached_examples_and_reduction(cached_run):
    final = cached_run.checkpoint_epochs()[-1]
    samples = CachedSamples(cached_run)
    with ActivationCache(cached_run.path / "activations.h5") as cache:
        for subset in cache.subsets:
            features = samples.features(cached_run.load_model(final), subset)
            for layer in cache.layers:
                np.testing.assert_allclose(features[layer], cache.features(final, layer, subset)[0], rtol=1e-5,
                                           atol=1e-6)


def test_geometry_of_rolled_back_layers(cached_run):
    table = rollback_geometry(cached_run, layers=["fc2", "logits"], ks=[1], epochs=[0], directions=["last"],
                              n_t=20, n_reps=1)
    assert set(table.columns) == set(GEOMETRY_COLUMNS)
    assert len(table) == 2 * 2 * 5 * 3  # k in {0, 1} x 2 layers x 5 subsets x 3 metrics
    value = table.set_index(["k", "layer", "subset", "metric"])["value"]
    # Rolling back the last block (logits) leaves fc2 as it was and changes the logits.
    assert value.loc[1, "fc2"].equals(value.loc[0, "fc2"])
    assert not value.loc[1, "logits"].equals(value.loc[0, "logits"])
    more = rollback_geometry(cached_run, layers=["fc1", "fc2", "logits"], ks=[1], epochs=[0], directions=["last"],
                             n_t=20, n_reps=1)
    assert len(more) == 2 * 3 * 5 * 3 and not more.duplicated(["k", "layer", "subset", "metric"]).any()
    assert load_rollback_geometry(cached_run.path).equals(more)


def test_cli_writes_the_tables_and_the_heatmap(cached_run, capsys, monkeypatch):
    drawn = []
    monkeypatch.setattr("mftma.plotting.rollback_heatmaps", lambda table: drawn.append(table) or rollback_heatmaps(table))
    parser = argparse.ArgumentParser(prog="mftma")
    rollback_cli.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["rollback", "--help"])
    assert "--direction" in capsys.readouterr().out
    args = parser.parse_args(["rollback", str(cached_run.path), "--k", "1", "--epochs", "2", "--direction", "last",
                              "--geometry", "--layers", "logits", "--n-t", "10", "--n-reps", "1", "--no-progress"])
    assert args.func(args) == 0
    results = cached_run.path / "results"
    table = pd.read_csv(results / "rollback.csv")
    assert {(2, 1), (2, 0)} <= set(zip(table["epoch"], table["k"]))
    final = cached_run.metrics().set_index("epoch").loc[cached_run.checkpoint_epochs()[-1]]
    at_k0 = table[(table["k"] == 0) & (table["direction"] == "last")]
    assert dict(zip(at_k0["subset"], at_k0["value"])) == {s: final[column] for s, column in METRIC_COLUMNS.items()}
    (shown,) = drawn  # the heatmap is drawn from the whole stored table
    pd.testing.assert_frame_equal(shown.reset_index(drop=True), load_rollback(cached_run.path).reset_index(drop=True))
    assert_png_drawn(results / "figures" / "rollback.png")
    assert (results / "figures" / "rollback.pdf").read_bytes()[:4] == b"%PDF"
    geometry = pd.read_csv(results / "rollback_geometry.csv")
    at_epoch_2 = geometry[geometry["epoch"] == 2]
    assert set(at_epoch_2["layer"]) == {"logits"} and set(at_epoch_2["k"]) == {0, 1}
