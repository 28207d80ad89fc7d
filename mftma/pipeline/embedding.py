"""The 2-D embedding figure of a run's activation cache (see :mod:`mftma.plotting.embedding`)."""
from __future__ import annotations

from mftma.plotting.embedding import EMBEDDING_ROWS, default_embedding_epochs, embedding_panels, penultimate_layer


def cached_views(cache_path, layer: str, epochs, subsets=tuple(s for s, _ in EMBEDDING_ROWS)) -> dict:
    """``{epoch: {subset: (X, labels, indices)}}`` of ``layer`` read from an activation cache.

    Parameters
    ----------
    cache_path : str or Path
        The cache file or a run directory holding ``activations.h5``.
    layer : str
        A cached layer.
    epochs : sequence of int
        Cached epochs, in column order.
    subsets : sequence of str
        Subsets to read; those the cache does not hold are skipped.
    """
    from mftma.cache.reader import ActivationCache

    with ActivationCache(cache_path) as cache:
        present = [subset for subset in subsets if subset in cache.subsets]
        indices = {subset: cache.sample(subset)["indices"] for subset in present}
        return {int(epoch): {subset: (*cache.features(epoch, layer, subset), indices[subset]) for subset in present}
                for epoch in epochs}


def cache_embedding(cache_path, layer: str | None = None, epochs=None, best_epoch: int | None = None,
                    method: str = "pca", seed: int = 0):
    """``(layer, figure)``: :func:`embedding_panels` of a layer read from an activation cache.

    Parameters
    ----------
    cache_path : str or Path
        The cache file or a run directory holding ``activations.h5``.
    layer : str, optional
        A cached layer (default: :func:`penultimate_layer` of the cached layers).
    epochs : sequence of int, optional
        Cached epochs, one column each (default: :func:`default_embedding_epochs`).
    best_epoch : int, optional
        The cached epoch of best test accuracy, for the default epochs and the column titles.
    method, seed
        The projection, see :func:`project_2d`.
    """
    from mftma.cache.reader import ActivationCache

    with ActivationCache(cache_path) as cache:
        cached, layers = cache.epochs, cache.layers
    layer = penultimate_layer(layers) if layer is None else layer
    titles = default_embedding_epochs(cached, best_epoch)
    if epochs is not None:
        titles = {int(epoch): titles.get(int(epoch), f"epoch {epoch}") for epoch in epochs}
    return layer, embedding_panels(cached_views(cache_path, layer, titles), layer, titles, method, seed)
