"""Read an activation cache written by :func:`mftma.cache.cache_activations`.

HDF5 layout (``RUN_DIR/activations.h5``, format version 2)::

    /                           attrs: format, format_version (2), mftma_version, run_settings_hash,
                                cache_settings (JSON: M, P, projection_dim, pool, seed, projection, dtype),
                                devices (JSON list of the devices that wrote it), dataset,
                                corruption, epsilon, seeds (JSON), model (JSON), config (JSON), run_metadata (JSON)
    /selections/SELECTION/indices
                                (n,) int64 sorted example indices (into the split) of the selection's feature
                                rows; attrs: split ("train"/"test"). SELECTION is ``kept`` (unpermuted),
                                ``randomized`` (permuted, restored, shuffled) or ``test``
    /samples/SUBSET/indices     (P*M,) int64 example indices into the subset's split, manifold by manifold
    /samples/SUBSET/rows        (P*M,) int64 the same examples as rows of the selection's features
    /samples/SUBSET/labels      (P*M,) int64 grouping label of each example (training label for "permuted",
                                the fresh random label for "shuffled", true label otherwise)
    /samples/SUBSET/classes     (P,) int64 the class of each manifold;  attrs: split, M, P, selection
    /layers/LAYER               attrs: index (position among the model's analysis layers), original_shape,
                                reduction (none/pool/projection/pool+projection), pooled_features, features,
                                projection_seed, projection_block_rows, projection_scale
    /epoch_XXXX                 attrs: epoch, weights_hash (of that checkpoint)
    /epoch_XXXX/LAYER/SELECTION (n, N) features (float32, or float16 with cache.dtype float16), one row per
                                example of the selection; chunks of M rows, lzf-compressed (projected layers: byte
                                shuffle + gzip level 1), Fletcher-32
                                checksummed (like the samples) so that damage is detected; attrs: complete
                                (True only once fully written); the ``input`` entries are stored once and
                                hard-linked into every later epoch. A *dropped* entry (features deleted after a
                                streaming analysis, ``mftma analyze --stream``) is an empty (0, N) record with
                                attrs complete = True, dropped = True, rows (n): it keeps the entry's identity
                                (its results are reused) while reading its features raises DataFileError

Files written by this version track free space persistently (``fs_persist``), so the space of dropped
entries is reused by later ones.

Each example's features are stored once per (epoch, layer): ``permuted``, ``restored`` and ``shuffled``
are three groupings (row orders and labels) of one ``randomized`` entry. A subset's features are the
entry's rows ``/samples/SUBSET/rows``, read back as float32 in the subset's order (manifold p is rows
p*M .. (p+1)*M).

Format version 1 (before the groupings were separated) stored ``/epoch_XXXX/LAYER/SUBSET`` float32
(P*M, N) for each subset, rows in the sample's order, with attrs complete, P, M. It is read as it is; its
``shuffled`` grouping is derived from the ``permuted`` sample and entry (the same as a version-2 cache of the
run would record), so an old cache gains the null grouping without running the network again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from mftma.errors import DataFileError, InputError, MFTMAError
from mftma.estimator.validation import manifolds_from_rows
from mftma.experiments.subsets import shuffled_sample
from mftma.names import SUBSETS

CACHE_FILE = "activations.h5"
FORMAT_NAME = "mftma-activation-cache"
FORMAT_VERSION = 2
#: HDF5 chunk cache of the open file, so batch writes that straddle chunks do not recompress them.
CHUNK_CACHE_BYTES = 64 * 2**20

_EPOCH_GROUP = re.compile(r"^epoch_(\d{4,})$")
_JSON_ATTRS = ("cache_settings", "seeds", "model", "config", "run_metadata", "devices")


def epoch_key(epoch: int) -> str:
    """HDF5 group name of an epoch, e.g. ``epoch_0005``."""
    return f"epoch_{epoch:04d}"


def selection_rows(examples: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Positions in ``examples`` (distinct example indices, any order) of each of ``indices``."""
    order = np.argsort(examples, kind="stable")
    positions = np.searchsorted(examples, indices, sorter=order)
    rows = order[np.minimum(positions, len(examples) - 1)]
    if not np.array_equal(examples[rows], indices):
        raise InputError("the sample holds examples that are not in its selection")
    return rows.astype(np.int64)


def open_cache_file(path: Path, mode: str = "r") -> h5py.File:
    """Open an activation cache, raising :class:`DataFileError` for files that are not one."""
    try:
        h5 = h5py.File(path, mode, rdcc_nbytes=CHUNK_CACHE_BYTES)
    except FileNotFoundError:
        raise DataFileError(f"activation cache {path} not found; create it with `mftma cache RUN_DIR`") from None
    except OSError as error:
        raise DataFileError(f"{path} is not a readable HDF5 file (corrupt or truncated?): {error}. "
                            "Rerun `mftma cache --rebuild` to move it aside and start anew.") from None
    if h5.attrs.get("format") != FORMAT_NAME:
        h5.close()
        raise DataFileError(f"{path} is an HDF5 file but not an mftma activation cache (no "
                            f"format={FORMAT_NAME!r} attribute)")
    if int(h5.attrs.get("format_version", -1)) > FORMAT_VERSION:
        h5.close()
        raise DataFileError(f"{path} uses cache format version {h5.attrs['format_version']}, newer than "
                            f"this mftma understands ({FORMAT_VERSION}); upgrade mftma")
    return h5


class ActivationCache:
    """Read-only access to an activation cache, in the estimator's and the probes' layouts.

    Content that cannot be read (a damaged chunk, a checksum mismatch, a broken object header) raises
    :class:`~mftma.errors.DataFileError` naming the entry and the repair, ``mftma cache RUN_DIR --rebuild``.

    Parameters
    ----------
    path : str or pathlib.Path
        The cache file, or a run directory holding ``activations.h5``.

    Examples
    --------
    ``run_dir`` is a run directory cached by ``mftma cache`` (here: the shipped ``tiny`` config's run).

    >>> with ActivationCache(run_dir) as cache:
    ...     print(cache.epochs, cache.layers)
    ...     manifolds = cache.manifolds(cache.epochs[-1], cache.layers[-1], "permuted")
    ...     X, labels = cache.features(cache.epochs[-1], "input", "test")
    [0, 1, 2, 3, 4] ['input', 'fc1', 'fc2', 'logits']
    >>> len(manifolds), manifolds[0].shape  # one (features, samples) array per class
    (10, (10, 5))
    >>> X.shape, labels[:7].tolist()  # (samples, features), samples grouped by class
    ((50, 40), [0, 0, 0, 0, 0, 1, 1])
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        self.path = path / CACHE_FILE if path.is_dir() else path
        self._h5 = open_cache_file(self.path, "r")
        self.format_version = int(self._h5.attrs["format_version"])
        with self._reading("the list of samples"):
            stored = list(self._h5.get("samples", {}))
        derived = ["shuffled"] if self.format_version == 1 and "permuted" in stored else []
        self._subsets = [name for name in SUBSETS if name in stored + derived]
        self._digests: dict[tuple[str, str], str] = {}

    def __enter__(self) -> ActivationCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._h5.close()

    @property
    def metadata(self) -> dict:
        """The file's root attributes, JSON-valued ones decoded."""
        with self._reading("the header"):
            attrs = dict(self._h5.attrs)
            return {key: json.loads(value) if key in _JSON_ATTRS else _plain(value) for key, value in attrs.items()}

    @property
    def epochs(self) -> list[int]:
        """Epochs with at least one entry, ascending."""
        with self._reading("the list of epochs"):
            return sorted(int(match.group(1)) for match in map(_EPOCH_GROUP.match, self._h5) if match)

    @property
    def layers(self) -> list[str]:
        """Cached layers in the model's order."""
        with self._reading("the layer records"):
            layers = self._h5.get("layers", {})
            return sorted(layers, key=lambda name: int(layers[name].attrs["index"]))

    @property
    def subsets(self) -> list[str]:
        """Cached subsets (those with a recorded sample), in the order of :data:`~mftma.experiments.subsets.SUBSETS`."""
        return list(self._subsets)

    def layer_info(self, layer: str) -> dict:
        """Original shape and reduction of a layer (the ``/layers/LAYER`` attributes)."""
        self._check_name("layer", layer, self.layers)
        with self._reading(f"the record of layer {layer!r}"):
            return {key: _plain(value) for key, value in self._h5["layers"][layer].attrs.items()}

    def sample(self, subset: str) -> dict:
        """The example sample of a subset.

        Returns
        -------
        dict
            ``indices``, ``labels``, ``classes`` and ``rows`` arrays, ``split``, ``M``, ``P`` and ``selection``:
            the entry (under each epoch's layer group) whose rows ``rows`` are the subset's features.
        """
        self._check_name("subset", subset, self.subsets)
        with self._reading(f"the {subset!r} sample"):
            return self._sample(subset)

    def _sample_attrs(self, subset: str) -> dict:
        """``split``, ``M``, ``P`` and ``selection`` of a subset's sample (read without its arrays)."""
        if self.format_version == 1:
            stored = "permuted" if subset == "shuffled" else subset
            return {**{key: _plain(v) for key, v in self._h5["samples"][stored].attrs.items()}, "selection": stored}
        return {key: _plain(value) for key, value in self._h5["samples"][subset].attrs.items()}

    def _sample(self, subset: str) -> dict:
        """A subset's sample; a version-1 file's ``shuffled`` is derived from its ``permuted`` sample."""
        if self.format_version == 1 and subset == "shuffled":
            return self._derived_shuffled(self._sample("permuted"))
        group = self._h5["samples"][subset]
        sample = {**{key: group[key][()] for key in group}, **self._sample_attrs(subset)}
        if self.format_version == 1:
            sample["rows"] = np.arange(len(sample["indices"]), dtype=np.int64)
        return sample

    def _derived_shuffled(self, permuted: dict) -> dict:
        """The ``shuffled`` grouping of a version-1 file's ``permuted`` entry, as the writer draws it."""
        seed = int(json.loads(self._h5.attrs["cache_settings"])["seed"])
        shuffled = shuffled_sample(permuted["indices"], permuted["classes"], int(permuted["M"]), seed)
        return {"indices": shuffled.indices, "labels": shuffled.labels, "classes": shuffled.classes,
                "rows": selection_rows(permuted["indices"], shuffled.indices), "split": shuffled.split,
                "M": int(permuted["M"]), "P": int(permuted["P"]), "selection": "permuted"}

    def entries(self) -> pd.DataFrame:
        """One row per recorded (epoch, layer, subset): epoch, layer, layer_index, subset, N, P, M, complete,
        dropped (its features were deleted after a streaming analysis; see :meth:`features`)."""
        rows = []
        layer_index = {name: index for index, name in enumerate(self.layers)}
        with self._reading("the samples' records"):
            samples = {subset: self._sample_attrs(subset) for subset in self._subsets}
        for epoch in self.epochs:
            with self._reading(f"the entries of epoch {epoch}"):
                group = self._h5[epoch_key(epoch)]
                names = [(layer, subset) for layer in group for subset in self._subsets
                         if samples[subset]["selection"] in group[layer]]
            for layer, subset in names:
                sample = samples[subset]
                with self._reading(_entry_name(epoch, layer, subset)):
                    data = group[layer][sample["selection"]]
                    rows.append({"epoch": epoch, "layer": layer, "layer_index": layer_index.get(layer, -1),
                                 "subset": subset, "N": data.shape[1], "P": int(sample["P"]),
                                 "M": int(sample["M"]), "complete": bool(data.attrs.get("complete", False)),
                                 "dropped": bool(data.attrs.get("dropped", False))})
        columns = ["epoch", "layer", "layer_index", "subset", "N", "P", "M", "complete", "dropped"]
        return pd.DataFrame(rows, columns=columns).sort_values(["epoch", "layer_index", "subset"], ignore_index=True)

    def features(self, epoch: int, layer: str, subset: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, labels)``: float32 features (P*M, N), one row per example, and each row's grouping label.

        Raises
        ------
        DataFileError
            The entry is missing, incomplete, dropped (with the ``mftma cache`` command that restores it) or
            damaged.
        """
        with self._reading(_entry_name(epoch, layer, subset)):
            data = self._entry(epoch, layer, subset)[()]
            sample = self._sample(subset)
        return data[sample["rows"]].astype(np.float32, copy=False), sample["labels"]

    def manifolds(self, epoch: int, layer: str, subset: str) -> list[np.ndarray]:
        """The P class manifolds of one entry, each a float32 (N, M) array: the estimator's layout."""
        X, _ = self.features(epoch, layer, subset)
        sample = self._sample_attrs(subset)
        return manifolds_from_rows(X, int(sample["P"]), int(sample["M"]))

    def entry_identity(self, epoch: int, layer: str, subset: str) -> str:
        """A hash of what an entry was computed from: the checkpoint, the examples and the reduction.

        Built from the epoch's ``weights_hash``, the subset's sample (indices, rows, labels, classes and
        attributes) and the layer's ``/layers/LAYER`` attributes (shape, pooling, projection), so it
        changes when the checkpoint, the sample or the projection behind the entry changes, e.g.
        after ``mftma cache --rebuild`` with other weights.
        """
        group = self._h5.get(epoch_key(epoch))
        selection = self._sample_attrs(subset)["selection"] if subset in self._subsets else None
        if group is None or layer not in group or selection not in group[layer]:
            raise DataFileError(f"{self.path} has no entry for epoch {epoch}, layer {layer!r}, subset {subset!r}")
        weights = str(group.attrs["weights_hash"])
        parts = [weights, self._digest("samples", subset), self._digest("layers", layer)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def _digest(self, kind: str, name: str) -> str:
        """SHA-256 of a subset's sample or a layer's record: attributes and arrays (memoized; the file is read-only)."""
        if (kind, name) not in self._digests:
            if kind == "samples":
                record = self._sample(name)
            else:
                record = {key: _plain(value) for key, value in self._h5[kind][name].attrs.items()}
            arrays = {key: value for key, value in record.items() if isinstance(value, np.ndarray)}
            attrs = {key: value for key, value in record.items() if key not in arrays}
            digest = hashlib.sha256(json.dumps(attrs, sort_keys=True).encode())
            for key in sorted(arrays):
                array = np.ascontiguousarray(arrays[key], dtype=np.int64)
                digest.update(f"|{key}|{array.shape}|".encode() + array.tobytes())
            self._digests[kind, name] = digest.hexdigest()
        return self._digests[kind, name]

    def _entry(self, epoch: int, layer: str, subset: str):
        self._check_name("epoch", epoch, self.epochs)
        self._check_name("layer", layer, self.layers)
        self._check_name("subset", subset, self.subsets)
        group = self._h5[epoch_key(epoch)]
        selection = self._sample_attrs(subset)["selection"]
        if layer not in group or selection not in group[layer]:
            raise DataFileError(f"{self.path} has no entry for epoch {epoch}, layer {layer!r}, subset "
                                f"{subset!r}; run `mftma cache` with them to add it")
        data = group[layer][selection]
        if data.attrs.get("dropped", False):
            raise DataFileError(
                f"{self.path}: the features of epoch {epoch}, layer {layer!r}, subset {subset!r} were dropped "
                "after a streaming analysis (`mftma analyze --stream` keeps only the layers and epochs asked "
                f"for); its results are in the table. To read them, cache them again: `mftma cache {self.path.parent} "
                f"--epochs {epoch} --layers {layer}`")
        if not data.attrs.get("complete", False):
            raise DataFileError(f"{self.path}: {_entry_name(epoch, layer, subset)} is incomplete (an "
                                "interrupted run); rerun `mftma cache` to finish it")
        return data

    @contextlib.contextmanager
    def _reading(self, what: str):
        """Turn the errors h5py raises on damaged content into a DataFileError naming ``what``.

        h5py reports damage as OSError (e.g. a checksum mismatch), KeyError or RuntimeError (broken object
        headers or links); ValueError comes from inconsistent values (e.g. a shape that does not match P, M).
        """
        try:
            yield
        except MFTMAError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as error:
            raise DataFileError(
                f"{self.path}: {what} cannot be read ({error}); the file is damaged. Run `mftma cache "
                f"{self.path.parent} --rebuild` to move it aside and cache anew") from None

    def _check_name(self, kind: str, name, valid: list) -> None:
        if name not in valid:
            raise InputError(f"unknown {kind} {name!r} in {self.path}; valid {kind}s: {valid}")


def _entry_name(epoch: int, layer: str, subset: str) -> str:
    return f"the entry for epoch {epoch}, layer {layer!r}, subset {subset!r}"


def _plain(value):
    """HDF5 attribute values as plain Python values (arrays as lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value
