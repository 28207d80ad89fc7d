"""Layer features of any network (trained, untrained or randomized) and their geometry and probes.

The activation cache serves checkpoints of a run; the flawed experiments also look at networks that
were never checkpointed (re-initialised blocks, fresh initialisations). Their features are reduced
exactly as the cache reduces them (:class:`~mftma.cache.projection.LayerReduction`: large layers are
projected with the same seeded Gaussian matrices), so their numbers compare with those of
``mftma analyze``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mftma.cache.projection import BatchReducer, LayerReduction
from mftma.probes.concept import spatial_mean

#: Geometry metrics reported per (network, layer): names of :func:`subset_geometry`'s results.
GEOMETRY_METRICS = ("capacity", "radius", "dimension", "center_correlation")


def layer_features(model, inputs: torch.Tensor, layers: Sequence[str],
                   reduce: Callable[[str, torch.Tensor], np.ndarray], batch_size: int = 256) -> dict[str, np.ndarray]:
    """Features of ``layers`` for ``inputs``, one row per example, reduced batch by batch by ``reduce``.

    Parameters
    ----------
    model : LayeredModel
        Run in eval mode without gradients.
    inputs : torch.Tensor
        The examples, ``(n, *input_shape)``.
    layers : sequence of str
        Analysis layers of ``model``.
    reduce : callable
        ``reduce(layer, activations) -> (batch, features)`` array, e.g. :func:`channel_means` or a
        :class:`CacheReduction`.
    """
    model.eval()
    parts = {layer: [] for layer in layers}
    with torch.no_grad():
        for batch in inputs.split(batch_size):
            activations = model.activations(batch, list(layers))
            for layer in layers:
                parts[layer].append(reduce(layer, activations[layer]))
    return {layer: np.concatenate(chunks) for layer, chunks in parts.items()}


def channel_means(layer: str, activations: torch.Tensor) -> np.ndarray:
    """Spatial mean per channel (the concept probes' features); ``layer`` is not used."""
    return spatial_mean(activations.detach().cpu().numpy())


class CacheReduction:
    """The activation cache's reduction of each layer (``projection_dim``, ``pool``, ``seed``, ``projection``),
    planned once."""

    def __init__(self, projection_dim: int, pool: bool = False, seed: int = 0, projection: str = "gaussian"):
        self.projection_dim, self.pool, self.seed, self.projection = projection_dim, pool, seed, projection
        self._reducers: dict[str, BatchReducer] = {}

    def __call__(self, layer: str, activations: torch.Tensor) -> np.ndarray:
        if layer not in self._reducers:
            reduction = LayerReduction.plan(layer, tuple(activations.shape[1:]), self.projection_dim, self.pool,
                                            self.seed, self.projection)
            self._reducers[layer] = BatchReducer(reduction)
        return self._reducers[layer](activations)


def subset_geometry(features: np.ndarray, labels: np.ndarray, P: int, M: int, *, n_t: int = 200, n_reps: int = 10,
                    seed: int = 0, probe_folds: int | None = 5) -> dict[str, float]:
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
        :data:`GEOMETRY_METRICS` and, with a probe, ``probe_accuracy``.
    """
    from mftma.estimator.analysis import analyze_manifolds
    from mftma.probes.classification import probe_accuracy

    manifolds = [np.ascontiguousarray(block.T) for block in features.reshape(P, M, -1)]
    result = analyze_manifolds(manifolds, n_t=n_t, n_reps=n_reps, seed=seed)
    metrics = {"capacity": result.capacity_avg, "radius": result.radius_avg, "dimension": result.dimension_avg,
               "center_correlation": float(result.center_correlation)}
    if probe_folds is not None:
        metrics["probe_accuracy"] = probe_accuracy(features, labels, n_splits=probe_folds, seed=seed).mean
    return metrics
