"""The activation cache: every analysed layer's features for fixed example samples, per checkpoint, in HDF5.

:func:`cache_activations` writes ``RUN_DIR/activations.h5`` (atomic, resumable, stale-detecting);
:class:`ActivationCache` reads it back in the estimator's layout. The HDF5 layout is described in
:mod:`mftma.cache.reader`.
"""
from mftma.cache.projection import LayerReduction, RandomProjection
from mftma.cache.reader import ActivationCache
from mftma.cache.writer import cache_activations

__all__ = ["ActivationCache", "LayerReduction", "RandomProjection", "cache_activations"]
