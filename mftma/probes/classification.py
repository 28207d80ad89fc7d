"""Linear classification probes on frozen features (docs/method.md §3.1-3.2, Alain & Bengio 2016).

A probe is features standardized (mean 0, variance 1 per feature, statistics taken from the
training folds only), then multinomial logistic regression fitted by L-BFGS with an L2 penalty:
scikit-learn's ``StandardScaler`` + ``LogisticRegression`` (:func:`make_probe`).

Two backends compute it. ``"sklearn"`` is that pipeline, fold after fold: the reference.
``"torch"`` (:mod:`mftma.probes.torch_logistic`) solves the same problem with the same stopping
rule and the same folds, all folds in one batched L-BFGS fit in float32, on a GPU when present.
``"auto"`` (the default) is ``"torch"``. The two agree within 0.5 points of accuracy on the same
folds (tested on structured random data and on cached layers of a trained network); on one CPU
thread the torch probe was 1.5-3x faster than scikit-learn's in ``benchmarks/bench_probes.py``
(100 classes, 1000 features), and it runs on a GPU. At 5000 features (100 classes, 4000 training rows)
it was slower on one CPU thread (13.1 s against 8.1 s, 2 threads 7.4 s, in one run of that benchmark):
6 batched evaluations of 5 folds' objective in float32 against scikit-learn's one L-BFGS iteration per
fold in float64, plus the standardization of float64 copies.

Regularization is fixed, ``C = 0.1`` by default (inverse L2 strength on standardized features).
A fixed value keeps probe accuracies comparable across layers, epochs and subsets: the question is
how linearly decodable the labels are, and an inner cross-validation that picks C per cell would
let the probe's capacity change from cell to cell, while costing a grid × inner folds more fits
for every cell of a run. With more features than samples any labelling is separable, so the weak
but non-zero penalty mostly decides which separating direction is found. On a planted 3-D signal
in 2000 noise features (10 classes, 500 examples) held-out accuracy was 0.34, 0.34, 0.32, 0.32,
0.33 for C = 0.001 ... 10, all within one fold standard deviation (0.03-0.05); C = 0.1 takes
0.8 s for 5 folds on one core, C = 0.001 five times longer.

BLAS threads: fit probes under ``threadpoolctl.threadpool_limits(1)`` when several run in
parallel; oversubscribed OpenBLAS threads made these fits 30 times slower on a 2-core machine.

Accuracy is always held out: stratified k-fold within one subset with that subset's labels
(:func:`probe_accuracy`), or trained on one set and scored on another (:func:`transfer_accuracy`).
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from mftma.errors import InputError

DEFAULT_C = 0.1
DEFAULT_FOLDS = 5
DEFAULT_MAX_ITER = 1000
BACKENDS = ("auto", "torch", "sklearn")
#: Revision of the torch backend's fit, part of stored results' settings so that results of another
#: revision are not reused as if equal. 2: fits in the span of the training rows when features
#: outnumber them (:data:`mftma.probes.torch_logistic.SPAN_RATIO`).
TORCH_FIT_REVISION = 2


@dataclasses.dataclass(frozen=True)
class ProbeScore:
    """Held-out accuracy of a probe across folds.

    Attributes
    ----------
    mean, std : float
        Mean and (population) standard deviation of the fold accuracies.
    fold_accuracies : numpy.ndarray
        Accuracy on each held-out fold.
    """

    mean: float
    std: float
    fold_accuracies: np.ndarray


def make_probe(C: float = DEFAULT_C, max_iter: int = DEFAULT_MAX_ITER):
    """Return an unfitted probe: ``StandardScaler`` then multinomial ``LogisticRegression`` (lbfgs).

    Parameters
    ----------
    C : float
        Inverse L2 regularization strength on standardized features.
    max_iter : int
        L-BFGS iteration limit.

    Returns
    -------
    sklearn.pipeline.Pipeline

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-3, 1, (20, 4)), rng.normal(3, 1, (20, 4))]
    >>> make_probe().fit(X, [0] * 20 + [1] * 20).score(X, [0] * 20 + [1] * 20)
    1.0
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check_C(C)
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter))


def probe_accuracy(
    features,
    labels,
    *,
    n_splits: int = DEFAULT_FOLDS,
    C: float = DEFAULT_C,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    backend: str = "auto",
    device: str = "auto",
) -> ProbeScore:
    """Held-out accuracy of a linear probe by stratified k-fold cross-validation.

    Parameters
    ----------
    features : array_like, shape (n_samples, n_features)
        One row per example.
    labels : array_like, shape (n_samples,)
        Class label of each example; every class needs at least ``n_splits`` examples.
    n_splits : int
        Number of stratified folds (at least 2).
    C, max_iter : float, int
        Probe settings, see :func:`make_probe`.
    seed : int
        Seed of the fold shuffling; equal seeds give equal results.
    backend : {"auto", "torch", "sklearn"}
        Implementation, see :func:`resolve_backend`; both use the same folds.
    device : str
        Device of the torch backend: ``"auto"`` (a GPU when present), ``"cpu"`` or ``"cuda[:i]"``.

    Returns
    -------
    ProbeScore

    Raises
    ------
    InputError
        On bad shapes, non-finite features, fewer than two classes, a class with fewer than
        ``n_splits`` examples, an unknown backend, or a CUDA device without a GPU.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-3, 1, (20, 4)), rng.normal(3, 1, (20, 4))]
    >>> probe_accuracy(X, [0] * 20 + [1] * 20).mean
    1.0
    """
    from sklearn.model_selection import StratifiedKFold

    features, labels = _check_features(features, labels, "features", "labels")
    _check_folds(labels, n_splits)
    _check_C(C)
    folds = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(features, labels))
    accuracies = _held_out_accuracies(features, labels, folds, C, max_iter, backend, device)
    return ProbeScore(float(accuracies.mean()), float(accuracies.std()), accuracies)


def transfer_accuracy(
    train_features,
    train_labels,
    test_features,
    test_labels,
    *,
    C: float = DEFAULT_C,
    max_iter: int = DEFAULT_MAX_ITER,
    backend: str = "auto",
    device: str = "auto",
) -> float:
    """Accuracy on one set of a probe trained on another (e.g. unpermuted training -> test examples).

    Parameters
    ----------
    train_features, test_features : array_like, shape (n_train, n_features), (n_test, n_features)
    train_labels, test_labels : array_like, shape (n_train,), (n_test,)
    C, max_iter : float, int
        Probe settings, see :func:`make_probe`.
    backend, device : str
        Implementation and torch device, see :func:`probe_accuracy`.

    Returns
    -------
    float
        Fraction of test examples classified correctly.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 20)
    >>> X = rng.normal(6 * y[:, None] - 3, 1, (40, 4))
    >>> transfer_accuracy(X[::2], y[::2], X[1::2], y[1::2])
    1.0
    """
    train_features, train_labels = _check_features(train_features, train_labels, "train_features", "train_labels")
    test_features, test_labels = _check_features(test_features, test_labels, "test_features", "test_labels")
    if train_features.shape[1] != test_features.shape[1]:
        raise InputError(
            f"train_features have {train_features.shape[1]} features but test_features have "
            f"{test_features.shape[1]}"
        )
    if np.unique(train_labels).size < 2:
        raise InputError("train_labels must hold at least two classes")
    _check_C(C)
    features = np.concatenate([train_features, test_features])
    labels = np.concatenate([train_labels, test_labels])
    split = [(np.arange(len(train_labels)), np.arange(len(train_labels), len(labels)))]
    return float(_held_out_accuracies(features, labels, split, C, max_iter, backend, device)[0])


def resolve_backend(backend: str) -> str:
    """The probe implementation a backend name stands for: ``"auto"`` is ``"torch"``.

    Raises
    ------
    InputError
        The name is not one of ``BACKENDS``.
    """
    if backend not in BACKENDS:
        raise InputError(f"probe backend must be one of {BACKENDS}, got {backend!r}")
    return "torch" if backend == "auto" else backend


def _held_out_accuracies(features, labels, folds, C, max_iter, backend, device) -> np.ndarray:
    if resolve_backend(backend) == "torch":
        from mftma.probes.torch_logistic import held_out_accuracies

        return held_out_accuracies(features, labels, folds, C=C, max_iter=max_iter, device=device)
    return np.array([_fit(features[train], labels[train], C, max_iter).score(features[test], labels[test])
                     for train, test in folds])


def _fit(features, labels, C, max_iter):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # Separable data (more features than samples) make L-BFGS creep on; the held-out accuracy
        # is settled long before its gradient tolerance is.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_probe(C, max_iter).fit(features, labels)


def _check_features(features, labels, features_name, labels_name):
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[0] == 0:
        raise InputError(f"{features_name} must be a non-empty 2-D array (samples, features), got shape {features.shape}")
    if labels.shape != (features.shape[0],):
        raise InputError(
            f"{labels_name} must have shape ({features.shape[0]},) to match {features_name}, got {labels.shape}"
        )
    if not np.isfinite(features).all():
        raise InputError(f"{features_name} contain NaN or infinite values")
    return features, labels


def _check_C(C):
    if not C > 0:
        raise InputError(f"C must be positive, got {C}")


def _check_folds(labels, n_splits):
    if int(n_splits) != n_splits or n_splits < 2:
        raise InputError(f"n_splits must be an integer >= 2, got {n_splits}")
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise InputError("labels must hold at least two classes")
    if counts.min() < n_splits:
        raise InputError(
            f"class {classes[counts.argmin()]!r} has {counts.min()} examples, fewer than the "
            f"{n_splits} folds of the probe; lower n_splits or cache more examples per class"
        )
