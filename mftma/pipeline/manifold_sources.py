"""One layer's manifolds from a file: a run directory's activation cache, an ``.npz`` or an ``.h5`` file.

The input of ``mftma diagnose`` and ``mftma simcap``. It lives above the estimator (which reads no
files of ours) and reads a cache through :mod:`mftma.cache.reader`, which imports no torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mftma.cache.reader import CACHE_FILE, ActivationCache
from mftma.errors import DataFileError, InputError
from mftma.estimator.validation import check_manifolds


def load_manifolds(source, epoch=None, layer=None, subset=None) -> tuple[list[np.ndarray], str]:
    """One layer's manifolds from a run directory's activation cache, an .npz or an .h5 file.

    Parameters
    ----------
    source : str or pathlib.Path
        A run directory (or its ``activations.h5``): the entry ``epoch``, ``layer``, ``subset`` (default:
        last epoch, :func:`default_layer`, first cached subset). Otherwise an ``.npz`` or ``.h5`` file with an array
        ``manifolds`` shaped (P, N, M), or holding only that one array.
    epoch, layer, subset
        The cache entry; ignored for plain array files.

    Returns
    -------
    (list of (N, M_p) arrays, str)
        The manifolds and a short description of where they came from.
    """
    path = Path(source)
    if not path.exists():
        raise DataFileError(f"{path} does not exist")
    if path.is_dir() or _is_activation_cache(path):
        return _cache_manifolds(path, epoch, layer, subset)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError) as error:
            raise DataFileError(f"{path} is not a readable .npz file: {error}") from None
    elif path.suffix in (".h5", ".hdf5"):
        arrays = _h5_arrays(path)
    else:
        raise InputError(f"{path}: expected a run directory, an .npz or an .h5 file")
    if "manifolds" in arrays:
        array = arrays["manifolds"]
    elif len(arrays) == 1:
        array = next(iter(arrays.values()))
    else:
        raise DataFileError(f"{path} holds {sorted(arrays)}; name the (P, N, M) array 'manifolds'")
    return list(check_manifolds(array)), str(path)


def _is_activation_cache(path: Path) -> bool:
    return path.name == CACHE_FILE


def _cache_manifolds(path, epoch, layer, subset):
    with ActivationCache(path) as cache:
        epoch, layer, subset = _entry(cache, epoch, layer, subset)
        manifolds = cache.manifolds(epoch, layer, subset)
    return manifolds, f"{path} epoch {epoch}, layer {layer}, subset {subset}"


def _entry(cache, epoch, layer, subset) -> tuple:
    """The cache entry :func:`load_manifolds` reads: the defaults filled in."""
    epoch = cache.epochs[-1] if epoch is None else epoch
    subset = cache.subsets[0] if subset is None else subset
    layer = default_layer(cache.entries(), epoch, subset) if layer is None else layer
    return epoch, layer, subset


def layer_width(source, epoch=None, layer=None, subset=None) -> int | None:
    """Features of the layer :func:`load_manifolds` reads, before any random projection of the cache.

    None for plain array files (their origin is unknown). When it equals the manifolds' N, no larger
    projection of that layer exists.
    """
    path = Path(source)
    if not (path.is_dir() or _is_activation_cache(path)):
        return None
    with ActivationCache(path) as cache:
        _, layer, _ = _entry(cache, epoch, layer, subset)
        return int(cache.layer_info(layer)["pooled_features"])


def default_layer(entries, epoch, subset) -> str | None:
    """The layer checked when none is named: the deepest with at least P * M / 2 features.

    Entries whose features were dropped by a streaming analysis (``dropped``) are not candidates.

    Unstructured clouds have a capacity of about 2/M, so their simulated capacity needs up to P * M / 2
    projection dimensions; narrower layers (the logits of a 10-class network) can fail the simulation.
    Without such a layer, the widest one.

    Parameters
    ----------
    entries : pandas.DataFrame
        ``ActivationCache.entries()``: epoch, layer, layer_index, subset, N, P, M, complete (and dropped).
    epoch, subset
        The cache entry's epoch and subset.

    Returns
    -------
    str or None
        The layer, or None when the cache has no complete entry for that epoch and subset.
    """
    readable = entries["complete"] & ~entries["dropped"] if "dropped" in entries else entries["complete"]
    rows = entries[(entries["epoch"] == epoch) & (entries["subset"] == subset) & readable]
    if rows.empty:
        return None
    wide = rows[rows["N"] >= rows["P"] * rows["M"] / 2]
    chosen = wide.sort_values("layer_index") if len(wide) else rows.sort_values(["N", "layer_index"])
    return str(chosen["layer"].iloc[-1])


def _h5_arrays(path):
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return {name: h5[name][()] for name in h5 if isinstance(h5[name], h5py.Dataset)}
    except OSError as error:
        raise DataFileError(f"{path} is not a readable HDF5 file: {error}") from None
