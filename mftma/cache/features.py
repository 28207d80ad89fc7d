"""Layer features of any network of a run, for the activation cache's examples and reduced like the cache.

The cache (:mod:`mftma.cache.writer`) serves checkpoints of a run; the rollback and the flawed
experiments also look at networks that were never checkpointed (rolled-back or re-initialised blocks,
fresh initialisations). Their features are taken here, on the same examples and reduced exactly as the
cache reduces them (:class:`~mftma.cache.projection.LayerReduction`), so their numbers compare with those
of ``mftma analyze``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mftma.cache.projection import BatchReducer, LayerReduction
from mftma.cache.reader import CACHE_FILE, ActivationCache
from mftma.errors import InputError

#: Examples per forward pass when features are taken.
FEATURE_BATCH_SIZE = 256


def layer_features(model, inputs: torch.Tensor, layers: Sequence[str],
                   reduce: Callable[[str, torch.Tensor], np.ndarray],
                   batch_size: int = FEATURE_BATCH_SIZE) -> dict[str, np.ndarray]:
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
        ``reduce(layer, activations) -> (batch, features)`` array, e.g. a :class:`CacheReduction`.
    batch_size : int
        Examples per forward pass.
    """
    model.eval()
    parts = {layer: [] for layer in layers}
    with torch.no_grad():
        for batch in inputs.split(batch_size):
            activations = model.activations(batch, list(layers))
            for layer in layers:
                parts[layer].append(reduce(layer, activations[layer]))
    return {layer: np.concatenate(chunks) for layer, chunks in parts.items()}


class CacheReduction:
    """The activation cache's reduction of each layer (``projection_dim``, ``pool``, ``seed``, ``projection``),
    planned once per layer from the first activations it sees."""

    def __init__(self, projection_dim: int, pool: bool = False, seed: int = 0, projection: str = "gaussian"):
        self.projection_dim, self.pool, self.seed, self.projection = projection_dim, pool, seed, projection
        self._reducers: dict[str, BatchReducer] = {}

    @classmethod
    def from_settings(cls, settings: dict) -> "CacheReduction":
        """The reduction of a cache's ``cache_settings`` (or of a run config's ``cache`` section as a dict)."""
        return cls(settings["projection_dim"], settings["pool"], settings["seed"],
                   settings.get("projection", "gaussian"))

    def __call__(self, layer: str, activations: torch.Tensor) -> np.ndarray:
        if layer not in self._reducers:
            reduction = LayerReduction.plan(layer, tuple(activations.shape[1:]), self.projection_dim, self.pool,
                                            self.seed, self.projection)
            self._reducers[layer] = BatchReducer(reduction)
        return self._reducers[layer](activations)


def sample_inputs(dataset, split: str, indices) -> torch.Tensor:
    """The inputs of a subset sample: rows ``indices`` of the dataset's ``split`` (``train`` or ``test``)."""
    x = dataset.x_train if split == "train" else dataset.x_test
    return torch.as_tensor(x, dtype=torch.float32)[torch.as_tensor(np.asarray(indices))]


class CachedSamples:
    """The activation cache's example samples and layer reductions, applied to any network of the run.

    Parameters
    ----------
    run : Run
        A run with an activation cache (``mftma cache``).
    layers : sequence of str, optional
        Cached layers to take (default: all).
    """

    def __init__(self, run, layers=None):
        with ActivationCache(run.path / CACHE_FILE) as cache:
            #: The cache's ``cache_settings``: they fix the examples and the reduction.
            self.cache_settings = cache.metadata["cache_settings"]
            self.reduce = CacheReduction.from_settings(self.cache_settings)
            self.layers = list(cache.layers if layers is None else layers)
            unknown = sorted(set(self.layers) - set(cache.layers))
            if unknown:
                raise InputError(f"layer(s) {unknown} are not in the activation cache; cached: {cache.layers}")
            self.samples = {subset: cache.sample(subset) for subset in cache.subsets}
            self.layer_index = {layer: int(cache.layer_info(layer)["index"]) for layer in self.layers}
        dataset = run.dataset()
        self.inputs = {subset: sample_inputs(dataset, sample["split"], sample["indices"])
                       for subset, sample in self.samples.items()}

    def features(self, model, subset: str) -> dict[str, np.ndarray]:
        """Reduced (P*M, N) features of every layer for the cached sample of ``subset`` (one forward pass)."""
        inputs = self.inputs[subset]
        return layer_features(model, inputs, self.layers, self.reduce, batch_size=max(len(inputs), 1))
