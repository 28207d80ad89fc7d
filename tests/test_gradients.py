"""Summed-gradient norms of permuted and unpermuted examples, and the gradient experiment on the tiny run."""
import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mftma.errors import InputError
from mftma.experiments.config import load_config
from mftma.pipeline.flawed.gradients import (
    equal_groups,
    gradient_experiment,
    gradient_table,
    summed_gradient_norms,
)
from mftma.experiments.models import build_model

ANALYSIS_DIR = Path(__file__).resolve().parents[1] / "analysis"


@pytest.fixture
def model_and_data():
    torch.manual_seed(0)
    model = build_model("cnn1d", (1, 8), 3, seed=0, channels=[3], hidden=5)
    return model, torch.randn(20, 1, 8), torch.randint(0, 3, (20,))


def _per_example_sum(model, inputs, labels, block):
    """Norm of the sum of the examples' gradients, one backward pass per example (the slow, obvious way)."""
    total = None
    for x, y in zip(inputs, labels):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model.eval()(x[None]), y[None]).backward()
        grads = torch.cat([p.grad.flatten() for p in model.blocks[block].parameters()])
        total = grads.clone() if total is None else total + grads
    return float(total.norm())


def test_summed_gradient_norm_equals_the_sum_of_per_example_gradients(model_and_data):
    model, inputs, labels = model_and_data
    norms = summed_gradient_norms(model, inputs, labels, batch_size=7)
    assert set(norms) == {"conv1", "fc1", "logits", "all"}
    for block in ("conv1", "logits"):
        assert norms[block] == pytest.approx(_per_example_sum(model, inputs, labels, block), rel=1e-5)
    assert norms["all"] == pytest.approx(np.sqrt(sum(norms[b] ** 2 for b in ("conv1", "fc1", "logits"))))
    assert summed_gradient_norms(model, inputs, labels, batch_size=20) == pytest.approx(norms, rel=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_equal_groups_sample_the_larger_group_down_reproducibly():
    mask = np.zeros(50, dtype=bool)
    mask[[3, 9, 20, 41]] = True
    groups = equal_groups(mask, seed=2)
    assert groups["permuted"].tolist() == [3, 9, 20, 41] and len(groups["unpermuted"]) == 4
    assert not mask[groups["unpermuted"]].any()
    np.testing.assert_array_equal(equal_groups(mask, seed=2)["unpermuted"], groups["unpermuted"])


def test_gradient_table_divides_each_summed_norm_by_the_group_size(model_and_data):
    model, inputs, labels = model_and_data
    groups = {"permuted": np.arange(5), "unpermuted": np.arange(5, 10)}
    table = gradient_table(model, inputs, labels, groups)
    assert table["layer"].tolist() == ["conv1", "fc1", "logits", "all"]
    assert table["layer_index"].tolist() == [1, 2, 3, 4] and table["n"].eq(5).all()
    summed = summed_gradient_norms(model, inputs[:5], labels[:5])
    np.testing.assert_allclose(table["permuted"], [summed[name] / 5 for name in table["layer"]], rtol=1e-6)
    np.testing.assert_allclose(table["ratio"], table["permuted"] / table["unpermuted"])
    with pytest.raises(InputError, match="one length"):
        gradient_table(model, inputs, labels, {"permuted": np.arange(3), "unpermuted": np.arange(4)})


def test_gradient_experiment_covers_every_checkpoint_and_draws_its_figure(tmp_path, monkeypatch):
    out = tmp_path / "gradients"
    table = gradient_experiment(load_config("tiny"), out, max_epoch=3, progress=False)
    assert sorted(set(table["epoch"])) == [0, 1, 2, 3]
    assert len(table) == 4 * 4 and table["n"].eq(100).all()  # 25 % of 400 permuted: 100 per group
    assert (table[["permuted", "unpermuted", "ratio"]] > 0).all().all()
    pd.testing.assert_frame_equal(pd.read_csv(out / "gradients.csv"), table, check_dtype=False)

    monkeypatch.syspath_prepend(str(ANALYSIS_DIR))
    monkeypatch.setattr("sys.argv", ["fig_gradients.py", str(out), "--formats", "png"])
    runpy.run_path(str(ANALYSIS_DIR / "fig_gradients.py"), run_name="__main__")
    assert sorted(path.name for path in (out / "figures").iterdir()) == ["gradients.json", "gradients.png"]
    numbers = json.loads((out / "figures" / "gradients.json").read_text())
    assert numbers["epochs"] == [0, 1, 2, 3] and len(numbers["ratio"]["all"]) == 4


def test_a_run_without_partially_permuted_labels_is_refused_before_training(tmp_path):
    config = load_config("tiny").replace(corruption={"kind": "random_labels"})
    with pytest.raises(InputError, match="permute' with 0 < fraction < 1"):
        gradient_experiment(config, tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()
