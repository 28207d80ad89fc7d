"""Finding the mislabeled examples: signals recorded in training, detection metrics, the detect-noise command."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from mftma.cli import main
from mftma.errors import DataFileError, InputError
from mftma.experiments.config import load_config
from mftma.experiments.example_signals import example_signals, load_signals
from mftma.experiments.training import train
from mftma.pipeline.detect_noise import (
    SIGNALS,
    best_detection,
    detection_table,
    precision_at_fraction,
    roc_auc,
    signal_scores,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train(load_config("tiny"), tmp_path_factory.mktemp("runs") / "tiny", progress=False)


def _planted(n=2000, fraction=0.25, seed=0):
    positive = np.zeros(n, dtype=bool)
    positive[np.random.default_rng(seed).choice(n, int(fraction * n), replace=False)] = True
    return positive


def test_a_separating_signal_scores_one_and_its_reverse_zero():
    positive = _planted()
    scores = positive + np.random.default_rng(1).uniform(0, 0.9, len(positive))
    assert roc_auc(scores, positive) == 1.0 and precision_at_fraction(scores, positive, 0.25) == 1.0
    assert roc_auc(-scores, positive) == 0.0 and precision_at_fraction(-scores, positive, 0.25) == 0.0


def test_a_random_signal_scores_chance():
    positive = _planted(n=20_000)
    scores = np.random.default_rng(2).normal(size=len(positive))
    assert roc_auc(scores, positive) == pytest.approx(0.5, abs=0.015)
    assert precision_at_fraction(scores, positive, 0.25) == pytest.approx(0.25, abs=0.02)


def test_a_planted_partial_signal_has_its_known_auc():
    """Permuted scores ~ N(d, 1), others ~ N(0, 1): AUC = Phi(d / sqrt 2)."""
    from scipy.stats import norm

    positive = _planted(n=40_000)
    scores = np.random.default_rng(3).normal(size=len(positive)) + 1.0 * positive
    assert roc_auc(scores, positive) == pytest.approx(norm.cdf(1 / np.sqrt(2)), abs=0.01)


def test_ties_count_in_proportion():
    positive = _planted(n=400)
    constant = np.ones(len(positive))
    assert roc_auc(constant, positive) == 0.5
    assert precision_at_fraction(constant, positive, 0.1) == pytest.approx(0.25)


def test_metrics_refuse_what_they_cannot_score():
    with pytest.raises(InputError, match="both permuted and unpermuted"):
        roc_auc(np.arange(3.0), np.ones(3, dtype=bool))
    with pytest.raises(InputError, match="NaN"):
        roc_auc(np.array([0.0, np.nan]), np.array([True, False]))
    with pytest.raises(InputError, match="at least one"):
        precision_at_fraction(np.arange(3.0), np.array([True, False, False]), 0.1)


def test_recorded_signals_match_autograd_and_the_definitions():
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(1))
    signals = example_signals(logits.detach(), labels)
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    (gradient,) = torch.autograd.grad(losses.sum(), logits)
    np.testing.assert_allclose(signals["loss"], losses.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(signals["logit_grad_norm"], gradient.norm(dim=1).numpy(), rtol=1e-6)
    assert np.array_equal(signals["correct"], (logits.argmax(1) == labels).numpy())
    assert np.array_equal(signals["correct"], signals["margin"] > 0)


def test_first_fitted_and_forgetting_follow_the_fitting_history():
    # Example histories over epochs 0..3: fitted at 0 only by chance; fitted at 2 and kept; fitted, forgotten, refitted.
    correct = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]], dtype=bool)
    zeros = np.zeros(correct.shape, dtype=np.float32)
    scores = signal_scores({"loss": zeros + 1, "logit_grad_norm": zeros, "margin": zeros, "correct": correct},
                           [0, 1, 2, 3])
    assert scores["first_fitted_epoch"].tolist() == [[1, 1, 1], [2, 2, 1], [3, 2, 1], [4, 2, 1]]
    assert scores["forgetting_events"].tolist() == [[0, 0, 0], [1, 0, 0], [1, 0, 1], [1, 0, 1]]
    assert scores["cumulative_loss"][:, 0].tolist() == [1, 2, 3, 4]


def test_training_records_signals_consistent_with_its_metrics(tiny_run):
    metrics = tiny_run.metrics()
    recorded = load_signals(tiny_run.path, metrics["epoch"].tolist())
    assert recorded["loss"].shape == (len(metrics), tiny_run.metadata["num_train"])
    np.testing.assert_allclose(recorded["correct"].mean(axis=1), metrics["acc_train"])
    assert recorded["loss"][0].mean() == pytest.approx(metrics["loss"][0], rel=1e-5)  # epoch 0: eval-mode loss


def test_detect_noise_command_writes_the_table_and_figure(tiny_run, tmp_path, capsys):
    assert main(["detect-noise", str(tiny_run.path), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "noise_detection.csv")
    assert len(table) == 5 * len(SIGNALS) and set(table["signal"]) == set(SIGNALS)
    assert table["roc_auc"].between(0, 1).all() and table["precision_at_eps"].between(0, 1).all()
    assert (table["n_permuted"] == 100).all() and (table["epsilon"] == 0.25).all()
    assert (tmp_path / "noise_detection.png").stat().st_size > 10_000
    best = best_detection(table)
    assert f"best: {best['signal']} at epoch {best['epoch']}: ROC-AUC {best['roc_auc']:.3f}" in capsys.readouterr().out
    assert best["roc_auc"] > 0.6  # above chance: even the 4-epoch tiny run fits the unpermuted examples first


def test_figure_has_a_line_per_signal_and_chance(tiny_run):
    import matplotlib.pyplot as plt

    from mftma.plotting.noise_detection import detection_curves

    figure = detection_curves(detection_table(tiny_run.path))
    assert [len(ax.get_lines()) for ax in figure.axes] == [len(SIGNALS) + 1] * 2
    plt.close(figure)


def test_a_run_without_signals_says_what_to_run(tiny_run, tmp_path):
    old = shutil.copytree(tiny_run.path, tmp_path / "old")
    shutil.rmtree(old / "example_signals")
    with pytest.raises(DataFileError, match=r"no per-example training signals for 5 of its 5 epochs.*mftma train"):
        detection_table(old)


def test_help_explains_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["detect-noise", "--help"])
    text = capsys.readouterr().out
    assert all(signal in text for signal in SIGNALS) and "corruption.npz" in text and "precision at epsilon" in text
