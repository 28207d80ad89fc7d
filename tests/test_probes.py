import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mftma.errors import InputError
from mftma.probes import ProbeScore, make_probe, probe_accuracy, transfer_accuracy


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _classes(rng, n_classes=4, per_class=30, n_features=40, spread=1.0, separation=6.0):
    labels = np.repeat(np.arange(n_classes), per_class)
    centers = rng.normal(0.0, separation, (n_classes, n_features))
    return centers[labels] + rng.normal(0.0, spread, (labels.size, n_features)), labels


def _planted(rng, n_classes=5, per_class=80, n_features=100, signal_dim=2):
    """Class information only in a random `signal_dim`-dimensional subspace, buried in noise."""
    labels = np.repeat(np.arange(n_classes), per_class)
    angles = 2 * np.pi * labels / n_classes
    signal = np.c_[np.cos(angles), np.sin(angles)][:, :signal_dim] * 4.0
    basis = np.linalg.qr(rng.normal(size=(n_features, signal_dim)))[0]
    noise = rng.normal(0.0, 1.0, (labels.size, n_features))
    return noise + (signal + rng.normal(0, 0.5, signal.shape)) @ basis.T, labels


def test_separable_gaussian_classes_are_decoded_perfectly(rng):
    features, labels = _classes(rng)
    score = probe_accuracy(features, labels)
    assert isinstance(score, ProbeScore)
    assert score.mean == 1.0 and score.std == 0.0 and score.fold_accuracies.shape == (5,)


def test_random_labels_give_chance_accuracy(rng):
    n_classes = 5
    features = rng.normal(size=(400, 60))
    labels = rng.permutation(np.repeat(np.arange(n_classes), 80))
    score = probe_accuracy(features, labels, seed=3)
    # 400 held-out predictions at chance 0.2: the binomial standard error is 0.02.
    assert abs(score.mean - 1 / n_classes) < 0.07


def test_planted_low_dimensional_signal_is_found(rng):
    features, labels = _planted(rng)
    assert probe_accuracy(features, labels).mean > 0.85
    shuffled = rng.permutation(labels)
    assert probe_accuracy(features, shuffled).mean < 0.4


def test_deterministic_given_seed(rng):
    features, labels = _planted(rng, per_class=20, n_features=50)
    first = probe_accuracy(features, labels, seed=7)
    again = probe_accuracy(features, labels, seed=7)
    np.testing.assert_array_equal(first.fold_accuracies, again.fold_accuracies)
    other = probe_accuracy(features, labels, seed=8)
    assert not np.array_equal(first.fold_accuracies, other.fold_accuracies)


def test_transfer_probe_scores_another_set(rng):
    features, labels = _classes(rng, per_class=40)
    train, test = np.arange(labels.size) % 2 == 0, np.arange(labels.size) % 2 == 1
    assert transfer_accuracy(features[train], labels[train], features[test], labels[test]) == 1.0
    swapped = (labels[test] + 1) % 4
    assert transfer_accuracy(features[train], labels[train], features[test], swapped) == 0.0


def test_probe_is_a_scaler_then_logistic_regression():
    probe = make_probe(C=0.5)
    assert [name for name, _ in probe.steps] == ["standardscaler", "logisticregression"]
    assert probe[-1].C == 0.5 and probe[-1].solver == "lbfgs"


@pytest.mark.parametrize(
    "features, labels, kwargs, message",
    [
        (np.zeros((20, 3)), np.repeat([0, 1], 10)[:-1], {}, "labels must have shape"),
        (np.zeros(20), np.repeat([0, 1], 10), {}, "2-D"),
        (np.full((20, 3), np.nan), np.repeat([0, 1], 10), {}, "NaN"),
        (np.zeros((20, 3)), np.zeros(20), {}, "two classes"),
        (np.zeros((8, 3)), np.repeat([0, 1], 4), {}, "fewer than the 5 folds"),
        (np.zeros((8, 3)), np.repeat([0, 1], 4), {"n_splits": 1}, "n_splits"),
        (np.zeros((8, 3)), np.repeat([0, 1], 4), {"n_splits": 2, "C": 0}, "C must be positive"),
    ],
)
def test_bad_input_raises_clear_errors(features, labels, kwargs, message):
    with pytest.raises(InputError, match=message):
        probe_accuracy(features, labels, **kwargs)


def test_transfer_requires_matching_features(rng):
    with pytest.raises(InputError, match="features"):
        transfer_accuracy(np.zeros((4, 3)), [0, 0, 1, 1], np.zeros((4, 2)), [0, 0, 1, 1])
