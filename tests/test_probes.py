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


# The torch backend against the scikit-learn reference, on the same folds.

def _agree(features, labels, **kwargs):
    """Both backends' scores: mean accuracy within 0.5 points, each fold within one held-out example.

    Both fits stop at the same gradient tolerance along different L-BFGS paths, so an example on
    the decision boundary may fall either way.
    """
    reference = probe_accuracy(features, labels, backend="sklearn", **kwargs)
    fast = probe_accuracy(features, labels, backend="torch", device="cpu", **kwargs)
    assert fast.mean == pytest.approx(reference.mean, abs=0.005)
    one_example = 1.0 / (labels.size // fast.fold_accuracies.size) + 1e-9
    np.testing.assert_allclose(fast.fold_accuracies, reference.fold_accuracies, rtol=0, atol=one_example)
    return fast, reference


@pytest.mark.parametrize("n_classes, n_features", [(6, 30), (6, 500), (2, 80)])
def test_torch_probe_matches_sklearn_on_structured_data(rng, n_classes, n_features):
    features, labels = _planted(rng, n_classes=n_classes, per_class=60, n_features=n_features)
    noisy = rng.random(labels.size) < 0.2
    labels[noisy] = rng.integers(0, n_classes, noisy.sum())  # label noise: no perfect probe
    features[:, 3] = 2.5  # a constant feature: centred, not scaled, by both
    fast, _ = _agree(features, labels, seed=2)
    assert 0.3 < fast.mean < 1.0  # neither chance nor trivially separable: the fits matter


def test_torch_probe_matches_sklearn_on_cached_layers(tiny_cached_run):
    from mftma.cache.reader import CACHE_FILE, ActivationCache

    with ActivationCache(tiny_cached_run / CACHE_FILE) as cache:
        cells = [(epoch, layer, subset) for epoch in (0, 4) for layer in cache.layers
                 for subset in ("unpermuted", "permuted")]
        for cell in cells:
            _agree(*cache.features(*cell))


def test_torch_transfer_matches_sklearn(rng):
    features, labels = _planted(rng, per_class=60, n_features=120)
    train, test = np.arange(labels.size) % 3 != 0, np.arange(labels.size) % 3 == 0
    args = features[train], labels[train], features[test], labels[test]
    assert transfer_accuracy(*args, backend="torch", device="cpu") == pytest.approx(
        transfer_accuracy(*args, backend="sklearn"), abs=0.005)


def test_torch_probe_is_deterministic_given_seed(rng):
    features, labels = _planted(rng, per_class=20, n_features=50)
    first = probe_accuracy(features, labels, seed=7, backend="torch", device="cpu")
    again = probe_accuracy(features, labels, seed=7, backend="torch", device="cpu")
    np.testing.assert_array_equal(first.fold_accuracies, again.fold_accuracies)
    other = probe_accuracy(features, labels, seed=8, backend="torch", device="cpu")
    assert not np.array_equal(first.fold_accuracies, other.fold_accuracies)


def test_unknown_backend_is_a_clear_error(rng):
    features, labels = _classes(rng)
    with pytest.raises(InputError, match="probe backend must be one of"):
        probe_accuracy(features, labels, backend="numpy")


def test_cuda_without_a_gpu_is_a_clear_error(rng):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    features, labels = _classes(rng)
    with pytest.raises(InputError, match="CUDA is not available"):
        probe_accuracy(features, labels, backend="torch", device="cuda")


def test_span_coordinates_keep_the_training_rows_geometry(rng):
    import torch

    from mftma.probes.torch_logistic import _FoldTransform

    rows = torch.from_numpy(rng.normal(2.0, 3.0, (40, 130)))
    transform = _FoldTransform.fit(rows)
    assert transform.basis.shape == (130, 40)
    standardized = (rows - rows.mean(dim=0)) / rows.std(dim=0, correction=0)
    held_out = torch.from_numpy(rng.normal(2.0, 3.0, (7, 130)))
    for first, second in ((rows, rows), (held_out, rows)):
        np.testing.assert_allclose(transform(first) @ transform(second).T,
                                   ((first - rows.mean(dim=0)) / rows.std(dim=0, correction=0)) @ standardized.T,
                                   atol=1e-9)


def test_span_reduction_finds_the_full_fits_optimum(rng, monkeypatch):
    from mftma.probes import torch_logistic

    features, labels = _planted(rng, n_classes=4, per_class=40, n_features=400)
    reduced = probe_accuracy(features, labels, seed=3, backend="torch", device="cpu")
    monkeypatch.setattr(torch_logistic, "SPAN_RATIO", np.inf)
    full = probe_accuracy(features, labels, seed=3, backend="torch", device="cpu")
    one_example = 1.0 / (labels.size // full.fold_accuracies.size) + 1e-9
    np.testing.assert_allclose(reduced.fold_accuracies, full.fold_accuracies, rtol=0, atol=one_example)
    assert 0.3 < full.mean < 1.0
