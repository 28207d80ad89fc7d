"""Concept regression probes and the concept experiment on a tiny texture run."""
import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mftma.errors import InputError
from mftma.experiments.concepts import CONCEPT_NAMES
from mftma.experiments.config import RunConfig
from mftma.probes.concept import CONCEPT_COLUMNS, concept_r2, concept_table, spatial_mean

ANALYSIS_DIR = Path(__file__).resolve().parents[1] / "analysis"


@pytest.fixture
def planted(rng):
    """200 examples, 6 features, a concept that is a linear function of two of them plus a little noise."""
    features = rng.standard_normal((200, 6))
    return features, features @ [1.0, -2.0, 0, 0, 0, 0] + 0.1 * rng.standard_normal(200)


@pytest.mark.parametrize("method", ["linear", "ridge"])
def test_a_planted_linear_concept_is_decoded_and_its_shuffled_baseline_is_not(planted, method):
    score = concept_r2(*planted, method=method, n_splits=4, seed=0)
    assert score.r2 > 0.98 and score.fold_r2.shape == (4,) and score.r2_std < 0.02
    assert score.baseline_r2 < 0.05
    again = concept_r2(*planted, method=method, n_splits=4, seed=0)
    assert (again.r2, again.baseline_r2) == (score.r2, score.baseline_r2)


def test_a_concept_unrelated_to_the_features_scores_like_its_baseline(rng):
    score = concept_r2(rng.standard_normal((200, 4)), rng.standard_normal(200), method="ridge", seed=1)
    assert -0.2 < score.r2 < 0.05 and -0.2 < score.baseline_r2 < 0.05  # held out: slightly below 0


def test_spatial_mean_averages_each_channel_over_positions():
    activations = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 2, 2)
    np.testing.assert_allclose(spatial_mean(activations), activations.reshape(2, 3, 4).mean(axis=2))
    np.testing.assert_array_equal(spatial_mean(np.ones((5, 7))), np.ones((5, 7)))


def test_concept_table_has_one_row_per_layer_concept_and_method(planted):
    features, values = planted
    table = concept_table({"a": features, "b": features[:, :3]}, {"x": values, "y": -values}, n_splits=3)
    assert list(table.columns) == list(CONCEPT_COLUMNS) and len(table) == 2 * 2 * 2
    assert set(zip(table["layer"], table["concept"], table["method"])) == {
        (layer, concept, method) for layer in "ab" for concept in "xy" for method in ("linear", "ridge")}


@pytest.mark.parametrize("features, values, options, message", [
    (np.ones((10, 2)), np.arange(9.0), {}, "shape \\(10,\\)"),
    (np.ones((10, 2)), np.ones(10), {}, "constant"),
    (np.full((10, 2), np.nan), np.arange(10.0), {}, "finite"),
    (np.ones((10, 2)), np.arange(10.0), {"n_splits": 6}, "n_splits"),
    (np.ones((10, 2)), np.arange(10.0), {"method": "lasso"}, "method must be one of"),
])
def test_bad_input_is_an_input_error_naming_the_problem(features, values, options, message):
    with pytest.raises(InputError, match=message):
        concept_r2(features, values, **options)


TINY_TEXTURES = {
    "data": {"name": "textures", "options": {"n_train": 96, "n_test": 40}},
    "corruption": {"kind": "none"},
    "model": {"name": "cnn2d", "options": {"channels": [4, 4], "hidden": 8}},
    "training": {"epochs": 2, "batch_size": 32, "device": "cpu", "num_threads": 1},
}


def test_concept_experiment_probes_every_network_layer_and_concept(tmp_path, monkeypatch, capsys):
    from mftma.pipeline.flawed.sweeps import concept_experiment
    from mftma.experiments.run import Run

    out = tmp_path / "concepts"
    table = concept_experiment(RunConfig.from_dict(TINY_TEXTURES), out, n_examples=30, methods=["ridge"], n_splits=2,
                               untrained_seeds=[3], progress=False)
    layers = ["input", "conv1", "conv2", "fc1", "logits"]
    assert set(table["model"]) == {"generalizing", "memorizing", "untrained_3"}
    assert len(table) == 3 * len(layers) * len(CONCEPT_NAMES)
    assert table.groupby("model")["layer_index"].unique().map(list).map(sorted).tolist() == [list(range(5))] * 3
    # Identical input features give identical input-layer scores for every network.
    assert table[table["layer"] == "input"].groupby("concept")["r2"].nunique().eq(1).all()
    assert Run(out / "runs" / "memorizing").metadata["corruption"] == "random_labels"
    assert Run(out / "runs" / "generalizing").metadata["corruption"] == "none"
    models = pd.read_csv(out / "concept_models.csv")
    assert list(models["model"]) == ["generalizing", "memorizing"] and models["epoch"].eq(2).all()
    pd.testing.assert_frame_equal(pd.read_csv(out / "concepts.csv"), table, check_dtype=False)

    monkeypatch.syspath_prepend(str(ANALYSIS_DIR))
    monkeypatch.setattr("sys.argv", ["fig_concepts.py", str(out), "--formats", "png"])
    runpy.run_path(str(ANALYSIS_DIR / "fig_concepts.py"), run_name="__main__")
    assert sorted(path.name for path in (out / "figures").iterdir()) == ["concepts.json", "concepts.png"]
    numbers = json.loads((out / "figures" / "concepts.json").read_text())
    assert numbers["layers"] == layers and len(numbers["color/ridge/memorizing"]["r2"]) == len(layers)


def test_a_data_set_without_concepts_is_refused(tmp_path):
    from mftma.pipeline.flawed.sweeps import concept_experiment

    mnist1d = {"name": "mnist1d", "options": {"n_train": 100, "n_test": 50}}
    mlp = {"name": "mlp", "options": {"hidden": [4]}}
    config = RunConfig.from_dict({**TINY_TEXTURES, "data": mnist1d, "model": mlp, "training": {"epochs": 1}})
    with pytest.raises(InputError, match="no concept values"):
        concept_experiment(config, tmp_path, progress=False)
    assert not (tmp_path / "runs" / "memorizing").exists()
