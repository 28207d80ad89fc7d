"""Randomized networks: seeded block re-initialisation and the randomization experiment on the tiny run."""
import json
import runpy
from pathlib import Path

import pandas as pd
import pytest
import torch

from mftma.errors import InputError
from mftma.experiments.config import load_config
from mftma.pipeline.flawed.randomization import (
    randomization_experiment,
    randomization_variants,
    randomize_blocks,
)
from mftma.experiments.models import build_model

ANALYSIS_DIR = Path(__file__).resolve().parents[1] / "analysis"


@pytest.fixture
def trained_cnn():
    """A small 1-D CNN with batch norm whose weights and running statistics moved away from their init."""
    model = build_model("cnn1d", (1, 16), 3, seed=0, channels=[4, 4], hidden=8)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(1)
    return model


def _block_states(model, name):
    return {key: value.clone() for key, value in model.state_dict().items() if key.startswith(f"blocks.{name}.")}


def test_only_the_chosen_blocks_change_and_every_parameter_and_buffer_of_them_does(trained_cnn):
    before = {key: value.clone() for key, value in trained_cnn.state_dict().items()}
    randomized = randomize_blocks(trained_cnn, ["conv2", "logits"], seed=4)
    for key, value in randomized.state_dict().items():
        changed = key.startswith(("blocks.conv2.", "blocks.logits."))
        assert torch.equal(value, before[key]) != changed, key
    assert torch.count_nonzero(randomized.blocks.conv2[1].running_mean) == 0  # fresh batch-norm statistics
    assert int(randomized.blocks.conv2[1].num_batches_tracked) == 0
    assert all(torch.equal(value, before[key]) for key, value in trained_cnn.state_dict().items())


def test_a_block_gets_the_same_random_weights_in_every_variant_and_seed(trained_cnn):
    alone = randomize_blocks(trained_cnn, ["conv2"], seed=4)
    with_others = randomize_blocks(trained_cnn, ["conv2", "fc1", "logits"], seed=4)
    for key, value in _block_states(alone, "conv2").items():
        assert torch.equal(value, _block_states(with_others, "conv2")[key])
    other_seed = randomize_blocks(trained_cnn, ["conv2"], seed=5)
    assert not torch.equal(other_seed.blocks.conv2[0].weight, alone.blocks.conv2[0].weight)


def test_unknown_blocks_are_input_errors(trained_cnn):
    with pytest.raises(InputError, match="unknown block.*'conv9'.*conv1"):
        randomize_blocks(trained_cnn, ["conv9"])


def test_variants_cascade_from_the_top_and_randomize_each_block_alone():
    variants = randomization_variants(["a", "b", "c"])
    assert variants == [("trained", "trained", ()), ("cascade_1", "cascade", ("c",)),
                        ("cascade_2", "cascade", ("b", "c")), ("cascade_3", "cascade", ("a", "b", "c")),
                        ("independent_a", "independent", ("a",)), ("independent_b", "independent", ("b",)),
                        ("independent_c", "independent", ("c",))]


def test_randomization_experiment_bookkeeping_and_figure(tmp_path, monkeypatch):
    out = tmp_path / "randomize"
    table = randomization_experiment(load_config("tiny"), out, n_t=20, n_reps=1, probe_folds=2, progress=False)
    layers = ["input", "fc1", "fc2", "logits"]
    metrics = ["capacity", "radius", "dimension", "center_correlation", "probe_accuracy"]
    assert len(table) == 7 * len(layers) * len(metrics)
    assert set(table["variant"]) == {name for name, _, _ in randomization_variants(layers[1:])}
    wide = table.pivot_table("value", ["variant", "layer"], "metric")
    # Layers below every randomized block are those of the trained network; the randomized ones differ.
    pd.testing.assert_series_equal(wide.loc[("cascade_1", "fc2")], wide.loc[("trained", "fc2")], check_names=False)
    pd.testing.assert_series_equal(wide.loc[("independent_fc2", "fc1")], wide.loc[("trained", "fc1")],
                                   check_names=False)
    assert wide.loc[("cascade_1", "logits"), "capacity"] != wide.loc[("trained", "logits"), "capacity"]
    accuracy = pd.read_csv(out / "randomization_accuracy.csv", keep_default_na=False)
    trained = accuracy.set_index("variant").loc["trained"]
    final_test = pd.read_csv(out / "runs" / "trained" / "metrics.csv")["acc_test"].iloc[-1]
    assert trained["randomized"] == "none" and trained["acc_test"] == pytest.approx(final_test)

    monkeypatch.syspath_prepend(str(ANALYSIS_DIR))
    monkeypatch.setattr("sys.argv", ["fig_randomization.py", str(out), "--out", str(tmp_path / "fig"),
                                     "--formats", "png"])
    runpy.run_path(str(ANALYSIS_DIR / "fig_randomization.py"), run_name="__main__")
    assert sorted(path.name for path in (tmp_path / "fig").iterdir()) == ["randomization.json", "randomization.png"]
    numbers = json.loads((tmp_path / "fig" / "randomization.json").read_text())
    assert numbers["layers"] == layers and len(numbers["profiles"]["cascade_3/capacity"]) == len(layers)
