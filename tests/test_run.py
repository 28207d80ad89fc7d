"""Run: the reader of a run directory."""
import json
import shutil

import numpy as np
import pytest
import torch

from mftma.errors import DataFileError
from mftma.experiments import checkpoints
from mftma.experiments.config import load_config
from mftma.experiments.models import LayeredModel
from mftma.experiments.run import Run
from mftma.experiments.training import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = load_config("tiny").replace(training={"epochs": 3, "checkpoints": [1]})
    return train(config, tmp_path_factory.mktemp("runs") / "tiny", progress=False)


def test_reads_metadata_and_config(run):
    reopened = Run(run.path)
    assert reopened.config == run.config
    assert reopened.metadata["dataset"] == "mnist1d"
    assert reopened.metadata["input_shape"] == [1, 40]
    assert reopened.metadata["model"]["layers"] == ["input", "fc1", "fc2", "logits"]
    assert reopened.checkpoint_epochs() == [0, 1, 3]


def test_load_model_matches_the_checkpoint(run):
    model = run.load_model(3)
    assert isinstance(model, LayeredModel) and not model.training
    state = run.state_dict(3)
    assert all(torch.equal(model.state_dict()[key], state[key]) for key in state)
    x = run.dataset().x_test[:4]
    assert model(x).shape == (4, 10)


def test_weights_hash_is_stable_and_tells_epochs_apart(run):
    assert run.weights_hash(3) == Run(run.path).weights_hash(3)
    assert run.weights_hash(0) != run.weights_hash(3)
    assert len(run.weights_hash(0)) == 64


def test_dataset_has_true_labels_and_corruption_the_training_labels(run):
    dataset, record = run.dataset(), run.corruption()
    assert np.array_equal(dataset.y_train.numpy(), record.true_labels)
    mask = record.permuted_mask
    assert mask.sum() == run.metadata["num_permuted"] == 100
    assert np.all(record.train_labels[mask] != record.true_labels[mask])
    assert np.array_equal(record.train_labels[~mask], record.true_labels[~mask])


def test_best_epoch_is_the_checkpointed_epoch_of_highest_test_accuracy(run):
    metrics = run.metrics()
    best = run.best_epoch()
    assert best in run.checkpoint_epochs() and run.best_epoch_is_checkpointed()
    assert best == run.true_best_epoch() == metrics["epoch"][metrics["acc_test"].idxmax()]


def test_run_without_its_best_checkpoint_falls_back_with_a_warning(run, tmp_path):
    """A run trained before the best checkpoint was kept: epoch 2 is best but only 0, 1, 3 are on disk."""
    old = Run(shutil.copytree(run.path, tmp_path / "old"))
    metrics = old.metrics()
    metrics["acc_test"] = [0.1, 0.6, 0.9, 0.5]
    metrics.to_csv(old.path / "metrics.csv", index=False)
    assert old.true_best_epoch() == 2 and not old.best_epoch_is_checkpointed()
    with pytest.warns(UserWarning, match=r"best test accuracy, 2 \(0.9000\), has no checkpoint.*epoch 1 \(0.6000\)"):
        assert old.best_epoch() == 1


def test_missing_epoch_names_the_available_ones(run):
    with pytest.raises(DataFileError, match=r"no checkpoint for epoch 2; available: \[0, 1, 3\]"):
        run.state_dict(2)


def test_half_written_checkpoint_is_never_listed(run):
    temporary = run.path / "checkpoints" / ".epoch_0002.pt.abc.tmp.pt"
    temporary.write_bytes(b"partial")
    try:
        assert run.checkpoint_epochs() == [0, 1, 3]
    finally:
        temporary.unlink()


def test_corrupt_checkpoint_is_a_clear_error(run, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("run.json", "config.yaml"):
        (copy / name).write_bytes((run.path / name).read_bytes())
    checkpoints.checkpoint_path(copy, 0).parent.mkdir()
    checkpoints.checkpoint_path(copy, 0).write_bytes(b"not a torch file")
    with pytest.raises(DataFileError, match="corrupt"):
        Run(copy).load_model(0)


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda path: None, "not an mftma run directory"),
        (lambda path: (path / "run.json").write_text("{broken"), "corrupt"),
        (lambda path: (path / "run.json").write_text(json.dumps({"format": "other"})), "not mftma run metadata"),
    ],
)
def test_foreign_directories_are_refused(tmp_path, prepare, message):
    prepare(tmp_path)
    with pytest.raises(DataFileError, match=message):
        Run(tmp_path)


def test_missing_directory_and_edited_config_are_refused(run, tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        Run(tmp_path / "nowhere")
    copy = tmp_path / "edited"
    copy.mkdir()
    (copy / "run.json").write_bytes((run.path / "run.json").read_bytes())
    (copy / "config.yaml").write_text((run.path / "config.yaml").read_text().replace("lr: 0.05", "lr: 0.5"))
    with pytest.raises(DataFileError, match="does not match the settings hash"):
        Run(copy)
