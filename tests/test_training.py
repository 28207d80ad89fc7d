"""The resumable training loop: determinism, bit-identical resume, checkpoints, metrics, errors."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from mftma.cli import main
from mftma.errors import DataFileError, InputError, TrainingDivergedError
from mftma.experiments import checkpoints
from mftma.experiments.config import load_config
from mftma.experiments.training import lr_factor, train


class Interrupt(Exception):
    """Raised from a callback to simulate a kill between epochs."""


@pytest.fixture(scope="module")
def tiny():
    return load_config("tiny").replace(training={"epochs": 3})


@pytest.fixture(scope="module")
def reference_run(tiny, tmp_path_factory):
    return train(tiny, tmp_path_factory.mktemp("reference") / "run", progress=False)


def _same_weights(run_a, run_b, epoch):
    a, b = run_a.state_dict(epoch), run_b.state_dict(epoch)
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_run_directory_is_complete(reference_run, tiny):
    assert reference_run.checkpoint_epochs() == [0, 1, 2, 3]
    assert reference_run.metadata["status"] == "complete"
    assert reference_run.metadata["settings_hash"] == tiny.settings_hash()
    metrics = reference_run.metrics()
    assert metrics["epoch"].tolist() == [0, 1, 2, 3]
    for column in ("loss", "acc_unpermuted", "acc_permuted", "acc_permuted_true", "acc_test", "seconds"):
        assert metrics[column].notna().all(), column
    assert ((metrics.filter(like="acc_") >= 0) & (metrics.filter(like="acc_") <= 1)).all().all()
    assert not any(path.name.startswith(".") for path in reference_run.path.rglob("*"))


def test_same_seed_gives_same_weights_and_another_seed_does_not(reference_run, tiny, tmp_path):
    again = train(tiny, tmp_path / "again", progress=False)
    assert _same_weights(reference_run, again, 3)
    assert again.weights_hash(3) == reference_run.weights_hash(3)
    other = train(tiny.replace(training={"seed": 1}), tmp_path / "other", progress=False)
    assert other.weights_hash(3) != reference_run.weights_hash(3)


def test_interrupted_run_resumes_bit_identically(reference_run, tiny, tmp_path):
    def stop_after_first(epoch):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny, tmp_path / "run", progress=False, on_epoch_end=stop_after_first)
    assert checkpoints.checkpoint_epochs(tmp_path / "run") == [0, 1]
    resumed = train(tiny, tmp_path / "run", progress=False)
    for epoch in resumed.checkpoint_epochs():
        assert _same_weights(reference_run, resumed, epoch)
    columns = ["epoch", "loss", "acc_permuted", "acc_test"]
    assert resumed.metrics()[columns].equals(reference_run.metrics()[columns])


def test_failed_checkpoint_write_keeps_previous_files_and_resumes(reference_run, tiny, tmp_path, monkeypatch):
    real_save = torch.save

    def save_then_fail(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        if obj.get("epoch") == 2 and "optimizer" not in obj:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(DataFileError, match="No space left on device"):
        train(tiny, tmp_path / "run", progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert checkpoints.checkpoint_epochs(tmp_path / "run") == [0, 1]
    assert not any(path.name.startswith(".") for path in (tmp_path / "run").rglob("*"))
    resumed = train(tiny, tmp_path / "run", progress=False)
    assert _same_weights(reference_run, resumed, 3)


def test_killed_subprocess_resumes_bit_identically(reference_run, tiny, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(tiny.to_dict()))
    run_dir = tmp_path / "run"
    # The child kills itself with SIGKILL in the middle of epoch 2.
    steps_per_epoch = -(-tiny.data.options["n_train"] // tiny.training.batch_size)
    kill_at = steps_per_epoch + steps_per_epoch // 2
    child = textwrap.dedent(f"""
        import os, signal, torch
        from mftma.experiments.config import load_config
        from mftma.experiments.training import train
        steps = []
        original = torch.optim.SGD.step
        def step(self, *args, **kwargs):
            steps.append(1)
            if len(steps) == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, *args, **kwargs)
        torch.optim.SGD.step = step
        train(load_config({str(config)!r}), {str(run_dir)!r}, progress=False)
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()
    assert checkpoints.checkpoint_epochs(run_dir) == [0, 1]
    resumed = train(tiny, run_dir, progress=False)
    assert _same_weights(reference_run, resumed, 3)


def _assert_kept_until_epoch_1(run_dir, reference_run):
    """The run directory holds epochs 0 and 1 only, with finite weights equal to the reference run's."""
    assert checkpoints.checkpoint_epochs(run_dir) == [0, 1]
    resume = checkpoints.load_torch_file(checkpoints.resume_path(run_dir))
    last = checkpoints.load_torch_file(checkpoints.checkpoint_path(run_dir, 1))["model"]
    assert resume["epoch"] == 1
    for name, tensor in reference_run.state_dict(1).items():
        assert torch.isfinite(last[name]).all() and torch.equal(last[name], tensor)
        assert torch.equal(resume["model"][name], tensor)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1] and np.isfinite(metrics.drop(columns="epoch")).all().all()
    assert not any(path.name.startswith(".") for path in run_dir.rglob("*"))


def test_a_diverging_run_stops_at_the_first_nan_loss_and_keeps_the_last_good_epoch(reference_run, tiny, tmp_path):
    # The same run as the reference until epoch 1, then 100 000 times the learning rate from epoch 2 on.
    diverging = tiny.replace(training={"schedule": "step", "milestones": [1], "gamma": 1e5})
    with pytest.raises(TrainingDivergedError, match=r"diverged in epoch 2: the loss of minibatch \d+ of 13 is "
                                                    r"(nan|inf).*as it was after epoch 1.*lower training.lr"):
        train(diverging, tmp_path / "run", progress=False)
    _assert_kept_until_epoch_1(tmp_path / "run", reference_run)


def test_non_finite_weights_after_the_last_step_of_an_epoch_are_not_saved(reference_run, tiny, tmp_path,
                                                                         monkeypatch):
    steps_per_epoch = -(-tiny.data.options["n_train"] // tiny.training.batch_size)
    original, steps = torch.optim.SGD.step, []

    def step_then_overflow_at_the_end_of_epoch_2(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        steps.append(1)
        if len(steps) == 2 * steps_per_epoch:
            self.param_groups[0]["params"][0].data[0, 0] = float("inf")
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", step_then_overflow_at_the_end_of_epoch_2)
    with pytest.raises(TrainingDivergedError, match=r"epoch 2: the weights 'blocks\.fc1\.\d\.weight' hold NaN"):
        train(tiny, tmp_path / "run", progress=False)
    _assert_kept_until_epoch_1(tmp_path / "run", reference_run)


def test_cli_reports_a_diverged_run_and_exits_non_zero(tiny, tmp_path, capsys):
    config = tmp_path / "diverging.yaml"
    config.write_text(json.dumps(tiny.replace(training={"lr": 1e4}).to_dict()))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("mftma train: error: training diverged in epoch 1") and "Traceback" not in error
    assert checkpoints.checkpoint_epochs(tmp_path / "run") == [0]


def test_checkpoint_schedules():
    assert checkpoints.checkpoint_schedule("all", 3) == [0, 1, 2, 3]
    log = checkpoints.checkpoint_schedule("log", 1000, log_count=10)
    assert log[:2] == [0, 1] and log[-1] == 1000 and len(log) == 11
    assert np.all(np.diff(np.log(log[1:])) > 0.5)
    assert checkpoints.checkpoint_schedule([5, 50, 500], 100) == [0, 5, 50, 100]


def test_explicit_schedule_keeps_only_listed_epochs(tiny, tmp_path):
    run = train(tiny.replace(training={"checkpoints": [2]}), tmp_path / "run", progress=False)
    assert run.checkpoint_epochs() == [0, 2, 3]
    assert len(run.metrics()) == 4


@pytest.mark.parametrize(
    ("schedule", "extra", "expected"),
    [
        ("constant", {}, [1.0, 1.0, 1.0, 1.0]),
        ("step", {"milestones": [2], "gamma": 0.5}, [1.0, 1.0, 0.5, 0.5]),
        ("linear", {}, [1.0, 0.75, 0.5, 0.25]),
        ("cosine", {}, [1.0, (1 + np.cos(np.pi / 4)) / 2, 0.5, (1 + np.cos(3 * np.pi / 4)) / 2]),
    ],
)
def test_learning_rate_schedules(tiny, schedule, extra, expected):
    settings = tiny.replace(training={"epochs": 4, "schedule": schedule, **extra}).training
    assert [lr_factor(settings, epoch) for epoch in (1, 2, 3, 4)] == pytest.approx(expected)


def test_adam_trains(tiny, tmp_path):
    run = train(tiny.replace(training={"optimizer": "adam", "lr": 0.01, "epochs": 1}), tmp_path / "r", progress=False)
    assert run.metrics()["loss"].iloc[1] < run.metrics()["loss"].iloc[0]


def test_other_settings_in_the_same_directory_are_refused(reference_run, tiny):
    with pytest.raises(InputError, match=r"other settings.*training\.lr"):
        train(tiny.replace(training={"lr": 0.5}), reference_run.path, progress=False)


def test_finished_run_is_not_retrained(reference_run, tiny):
    before = checkpoints.checkpoint_path(reference_run.path, 3).stat().st_mtime_ns
    train(tiny.replace(training={"num_threads": 2}), reference_run.path, progress=False)
    assert checkpoints.checkpoint_path(reference_run.path, 3).stat().st_mtime_ns == before


def test_foreign_nonempty_directory_is_refused(tiny, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataFileError, match="not an mftma run directory"):
        train(tiny, tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data": {"options": {"size": 3}}}, "unknown option.*size"),
        ({"model": {"options": {"depth": 3}}}, r"unknown option\(s\) \['depth'\]"),
    ],
)
def test_unknown_options_fail_before_writing(tiny, tmp_path, changes, message):
    with pytest.raises(InputError, match=message):
        train(tiny.replace(**changes), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "run.json").exists()


def test_missing_cuda_is_a_clear_error(tiny, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(InputError, match="CUDA is not available"):
        train(tiny.replace(training={"device": "cuda"}), tmp_path / "run", progress=False)


def _cli(*argv):
    import argparse

    from mftma.cli import train as train_command

    parser = argparse.ArgumentParser(prog="mftma")
    train_command.register(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    return args.func(args)


def test_cli_trains_with_overrides_and_reports(tmp_path, capsys):
    assert _cli("tiny", "--out", str(tmp_path / "run"), "--n-epochs", "1", "--device", "cpu", "--no-progress") == 0
    assert "test accuracy" in capsys.readouterr().out
    with pytest.raises(InputError, match="training.epochs"):
        _cli("tiny", "--out", str(tmp_path / "run"), "--n-epochs", "2", "--no-progress")


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        _cli("--help")
    text = capsys.readouterr().out
    for option in ("--out", "--n-epochs", "--device", "--num-threads", "--no-progress", "metrics.csv"):
        assert option in text


#: Planted test accuracies of epochs 0..5: the best so far moves 0 -> 1 -> 2 -> 4, and only 0 and 5 are scheduled.
PLANTED_ACCURACY = [0.1, 0.5, 0.7, 0.6, 0.8, 0.3]


@pytest.fixture
def planted_accuracy(monkeypatch):
    """Replace each epoch's test accuracy by PLANTED_ACCURACY, in call order; ``.epoch`` is the next epoch."""
    from mftma.experiments import training

    original = training._evaluate

    class Planted:
        epoch = 0

        def __call__(self, *args):
            evaluation = original(*args)
            evaluation["acc_test"] = PLANTED_ACCURACY[self.epoch]
            self.epoch += 1
            return evaluation

    planted = Planted()
    monkeypatch.setattr(training, "_evaluate", planted)
    return planted


@pytest.fixture
def unscheduled(tiny):
    return tiny.replace(training={"epochs": 5, "checkpoints": []})


def test_best_epoch_off_the_schedule_keeps_its_checkpoint(unscheduled, planted_accuracy, tmp_path):
    kept = []
    run = train(unscheduled, tmp_path / "run", progress=False,
                on_epoch_end=lambda epoch: kept.append(checkpoints.checkpoint_epochs(tmp_path / "run")))
    assert kept == [[0, 1], [0, 2], [0, 2], [0, 4], [0, 4, 5]]
    assert run.true_best_epoch() == run.best_epoch() == 4 and run.best_epoch_is_checkpointed()
    assert checkpoints.load_torch_file(checkpoints.checkpoint_path(run.path, 4))["epoch"] == 4


def test_resume_keeps_the_best_checkpoint_and_removes_stale_ones(unscheduled, planted_accuracy, tmp_path,
                                                                  monkeypatch):
    reference = train(unscheduled, tmp_path / "reference", progress=False)
    planted_accuracy.epoch = 0
    run_dir = tmp_path / "run"

    def stop_after_third(epoch):
        if epoch == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(unscheduled, run_dir, progress=False, on_epoch_end=stop_after_third)
    assert checkpoints.checkpoint_epochs(run_dir) == [0, 2]
    # As if killed after writing epoch 4's new best but before committing it, and an older best left behind.
    for epoch in (1, 4):
        checkpoints.atomic_torch_save({"epoch": epoch, "model": {}}, checkpoints.checkpoint_path(run_dir, epoch))
    with monkeypatch.context() as patch:
        patch.setattr("mftma.experiments.training._train_epoch", lambda *args, **kwargs: _raise(Interrupt))
        with pytest.raises(Interrupt):
            train(unscheduled, run_dir, progress=False)
    assert checkpoints.checkpoint_epochs(run_dir) == [0, 2]
    kept = []
    resumed = train(unscheduled, run_dir, progress=False,
                    on_epoch_end=lambda epoch: kept.append(checkpoints.checkpoint_epochs(run_dir)))
    assert kept == [[0, 4], [0, 4, 5]]
    assert resumed.best_epoch() == 4
    assert _same_weights(reference, resumed, 4) and _same_weights(reference, resumed, 5)


def _raise(error):
    raise error
