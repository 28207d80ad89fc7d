"""Concept regression probes on frozen features (docs/method.md §3.3, Graziani, Müller & Andrearczyk 2019).

A concept probe asks how linearly a continuous property of an image (a hue fraction, a GLCM statistic;
see :mod:`mftma.experiments.concepts`) can be read from one layer. Each layer's activations are
averaged over their spatial positions (one value per channel, :func:`spatial_mean`), standardized with
the training folds' statistics, and regressed on the concept by

``linear``
    ordinary least squares (with more channels than examples it interpolates; held-out R² then shows it);
``ridge``
    ridge regression whose penalty is chosen per training fold by efficient leave-one-out
    cross-validation over :data:`RIDGE_ALPHAS` (``sklearn.linear_model.RidgeCV``).

The score is the held-out coefficient of determination R² (``sklearn.metrics.r2_score``, 1 is perfect,
0 is as good as predicting the held-out mean, negative is worse) averaged over shuffled k-fold splits; a
held-out fold on which the concept happens to be constant scores 0 (scikit-learn's convention).
The *shuffled-target baseline* is the same probe on a seeded random permutation of the concept values:
what a probe of this size reaches on these features without any relation to the concept.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mftma.errors import InputError
from mftma.probes.classification import DEFAULT_FOLDS

METHODS = ("linear", "ridge")
#: Ridge penalties (on standardized features) searched by leave-one-out cross-validation per fold.
RIDGE_ALPHAS = tuple(np.logspace(-2, 5, 8))
#: Columns of :func:`concept_table`.
CONCEPT_COLUMNS = ("layer", "concept", "method", "r2", "r2_std", "baseline_r2", "baseline_r2_std")


@dataclasses.dataclass(frozen=True)
class ConceptScore:
    """Held-out R² of a concept probe and of its shuffled-target baseline.

    Attributes
    ----------
    r2, r2_std : float
        Mean and (population) standard deviation of the fold R² values.
    baseline_r2, baseline_r2_std : float
        The same for the probe fitted to shuffled concept values.
    fold_r2 : numpy.ndarray
        R² on each held-out fold.
    """

    r2: float
    r2_std: float
    baseline_r2: float
    baseline_r2_std: float
    fold_r2: np.ndarray


def spatial_mean(activations) -> np.ndarray:
    """Average activations over their spatial positions: ``(n, C, *spatial) -> (n, C)``; 2-D input unchanged.

    Examples
    --------
    >>> spatial_mean(np.ones((2, 3, 4, 4))).shape
    (2, 3)
    """
    array = np.asarray(activations, dtype=np.float64)
    if array.ndim < 2:
        raise InputError(f"activations must be shaped (n, features) or (n, C, *spatial), got {array.shape}")
    return array.reshape(*array.shape[:2], -1).mean(axis=2)


def make_regressor(method: str = "ridge"):
    """Unfitted probe: ``StandardScaler`` then ``LinearRegression`` (``"linear"``) or ``RidgeCV`` (``"ridge"``)."""
    from sklearn.linear_model import LinearRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if method not in METHODS:
        raise InputError(f"concept probe method must be one of {list(METHODS)}, got {method!r}")
    regressor = LinearRegression() if method == "linear" else RidgeCV(alphas=RIDGE_ALPHAS)
    return make_pipeline(StandardScaler(), regressor)


def concept_r2(features, values, *, method: str = "ridge", n_splits: int = DEFAULT_FOLDS,
               seed: int = 0) -> ConceptScore:
    """Held-out R² of a linear regression from ``features`` to one concept, with its shuffled baseline.

    Parameters
    ----------
    features : array_like, shape (n_samples, n_features)
        One row per example (e.g. :func:`spatial_mean` of a layer's activations).
    values : array_like, shape (n_samples,)
        The concept value of each example.
    method : str
        ``"linear"`` (least squares) or ``"ridge"``; see the module docstring.
    n_splits : int
        Number of shuffled folds (at least 2, at most n_samples / 2).
    seed : int
        Seed of the fold split and of the baseline's shuffle; equal seeds give equal results.

    Returns
    -------
    ConceptScore

    Raises
    ------
    InputError
        On bad shapes, non-finite values, constant concept values, or too few examples for the folds.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((100, 5))
    >>> score = concept_r2(X, X @ [1.0, 2.0, 0.0, 0.0, 0.0] + 0.1 * rng.standard_normal(100))
    >>> score.r2 > 0.99, score.baseline_r2 < 0.1
    (True, True)
    """
    from sklearn.model_selection import KFold

    features, values = _check(features, values, n_splits)
    folds = list(KFold(n_splits=int(n_splits), shuffle=True, random_state=seed).split(features))
    shuffled = np.random.default_rng(seed).permutation(values)
    fold_r2 = _fold_r2(features, values, folds, method)
    baseline = _fold_r2(features, shuffled, folds, method)
    return ConceptScore(float(fold_r2.mean()), float(fold_r2.std()), float(baseline.mean()), float(baseline.std()),
                        fold_r2)


def concept_table(features_by_layer: dict, concepts: dict, *, methods=METHODS, n_splits: int = DEFAULT_FOLDS,
                  seed: int = 0) -> pd.DataFrame:
    """Concept probe scores of every (layer, concept, method).

    Parameters
    ----------
    features_by_layer : dict of str to array_like (n, features)
        Per layer, one row per example, in the order of the concept values.
    concepts : dict of str to array_like (n,)
        Concept name -> value per example.
    methods : sequence of str
        Probe methods (:data:`METHODS`).
    n_splits, seed : int
        As in :func:`concept_r2`.

    Returns
    -------
    pandas.DataFrame
        One row per (layer, concept, method) with columns :data:`CONCEPT_COLUMNS`.
    """
    rows = []
    for layer, features in features_by_layer.items():
        for concept, values in concepts.items():
            for method in methods:
                score = concept_r2(features, values, method=method, n_splits=n_splits, seed=seed)
                rows.append({"layer": layer, "concept": concept, "method": method, "r2": score.r2,
                             "r2_std": score.r2_std, "baseline_r2": score.baseline_r2,
                             "baseline_r2_std": score.baseline_r2_std})
    return pd.DataFrame(rows, columns=list(CONCEPT_COLUMNS))


def _fold_r2(features, values, folds, method) -> np.ndarray:
    from sklearn.metrics import r2_score

    scores = []
    for train, held_out in folds:
        model = make_regressor(method).fit(features[train], values[train])
        scores.append(r2_score(values[held_out], model.predict(features[held_out])))
    return np.array(scores)


def _check(features, values, n_splits):
    features = np.asarray(features, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0:
        raise InputError(f"features must be a non-empty 2-D array (samples, features), got shape {features.shape}")
    if values.shape != (features.shape[0],):
        raise InputError(f"concept values must have shape ({features.shape[0]},) to match features, "
                         f"got {values.shape}")
    if not (np.isfinite(features).all() and np.isfinite(values).all()):
        raise InputError("features and concept values must be finite (no NaN or infinity)")
    if np.ptp(values) == 0:
        raise InputError("concept values are constant over these examples; R² is undefined")
    if int(n_splits) != n_splits or not 2 <= n_splits <= features.shape[0] // 2:
        raise InputError(f"n_splits must be an integer in [2, n_samples / 2 = {features.shape[0] // 2}], "
                         f"got {n_splits}")
    return features, values
