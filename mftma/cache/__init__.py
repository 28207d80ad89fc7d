"""The activation cache: every analysed layer's features for fixed example samples, per checkpoint, in HDF5.

:func:`cache_activations` writes ``RUN_DIR/activations.h5`` (atomic, resumable, stale-detecting);
:class:`ActivationCache` reads it back in the estimator's layout. The HDF5 layout is described in
:mod:`mftma.cache.reader`. The names are imported on first use, so that reading a cache
(:mod:`mftma.cache.reader`) does not import torch.
"""
from mftma.lazy import lazy_exports

_EXPORTS = {
    "ActivationCache": "mftma.cache.reader",
    "LayerReduction": "mftma.cache.projection",
    "RandomProjection": "mftma.cache.projection",
    "cache_activations": "mftma.cache.writer",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("mftma.cache", _EXPORTS, globals())
