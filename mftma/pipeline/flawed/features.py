"""Geometry and probes of layer features, and the concept probes' features, for the flawed experiments.

The features themselves are taken by :mod:`mftma.cache.features` (same examples and reduction as the
activation cache), so the numbers compare with those of ``mftma analyze``.
"""
from __future__ import annotations

import numpy as np
import torch

from mftma.estimator import DEFAULT_N_REPS, DEFAULT_N_T
from mftma.estimator.validation import manifolds_from_rows
from mftma.probes.classification import DEFAULT_FOLDS
from mftma.probes.concept import spatial_mean

#: Geometry metrics reported per (network, layer, subset): the keys of :func:`subset_geometry`'s results
#: (with ``probe_accuracy`` when a probe is run).
SUBSET_GEOMETRY_METRICS = ("capacity", "radius", "dimension", "center_correlation")


def channel_means(layer: str, activations: torch.Tensor) -> np.ndarray:
    """Spatial mean per channel (the concept probes' features); ``layer`` is not used."""
    return spatial_mean(activations.detach().cpu().numpy())


def subset_geometry(features: np.ndarray, labels: np.ndarray, P: int, M: int, *, n_t: int = DEFAULT_N_T,
                    n_reps: int = DEFAULT_N_REPS, seed: int = 0,
                    probe_folds: int | None = DEFAULT_FOLDS) -> dict[str, float]:
    """MFTMA geometry (and held-out probe accuracy) of P manifolds of M consecutive rows each.

    Parameters
    ----------
    features : ndarray, (P * M, N)
        Rows grouped manifold by manifold (the layout of a subset sample).
    labels : ndarray, (P * M,)
        Grouping label of each row, for the linear probe.
    P, M : int
        Manifolds and examples per manifold.
    n_t, n_reps, seed : int
        Estimator settings (:func:`~mftma.estimator.analysis.analyze_manifolds`, kappa 0).
    probe_folds : int or None
        Stratified folds of the linear probe (:func:`~mftma.probes.classification.probe_accuracy`);
        None skips the probe.

    Returns
    -------
    dict
        :data:`SUBSET_GEOMETRY_METRICS` and, with a probe, ``probe_accuracy``.
    """
    from mftma.estimator.analysis import analyze_manifolds
    from mftma.probes.classification import probe_accuracy

    summary = analyze_manifolds(manifolds_from_rows(features, P, M), n_t=n_t, n_reps=n_reps, seed=seed).summary()
    metrics = {metric: float(summary[metric]) for metric in SUBSET_GEOMETRY_METRICS}
    if probe_folds is not None:
        metrics["probe_accuracy"] = probe_accuracy(features, labels, n_splits=probe_folds, seed=seed).mean
    return metrics
