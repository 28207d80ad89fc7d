"""Write a run's activation cache, ``RUN_DIR/activations.h5`` (layout in :mod:`mftma.cache.reader`).

The file is created atomically (its header goes to a temporary file that is renamed into place). Each
example selection's features are stored once per (epoch, layer), in ``/epoch_XXXX/LAYER/SELECTION``; the
groupings (subsets) are row indices into them under ``/samples``. Each entry is created with
``complete = False``, filled batch by batch and only then marked ``complete = True``; the file is flushed at
the end of every epoch (and every ``FLUSH_SECONDS``), so an interrupted run leaves finished entries valid:
rerunning deletes and redoes only unfinished entries and never rewrites finished ones. The run's settings
hash, the cache settings, the samples, the layers' shapes and reductions and every epoch's weights
hash are recorded; a mismatch with the run raises :class:`~mftma.errors.DataFileError` (``rebuild=True``
moves the stale file aside and starts a new one). Files of an older format are read, never extended. A batch
of features holding NaN or inf (from a diverged or damaged checkpoint) stops the run with a
:class:`~mftma.errors.DataFileError` naming the entry, which is never marked complete.

The forward pass and the projection run on ``cache.device`` (the GPU when present under ``auto``). The
projection kind and the storage type are part of the cache settings, so a cache written with another is stale.
The device is not: results on the CPU and the GPU agree up to float rounding (as the projection's own float32
sums do across implementations), so a cache may be resumed on another device; the root attribute
``devices`` lists every device that wrote into the file.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import torch
from mftma.progress import progress_bar

import mftma
from mftma.atomic import atomic_path
from mftma.cache.projection import DEFAULT_CACHE_BYTES, BatchReducer, LayerReduction
from mftma.cache.reader import (CACHE_FILE, FORMAT_NAME, FORMAT_VERSION, epoch_key, open_cache_file,
                                 selection_rows)
from mftma.errors import DataFileError, InputError
from mftma.experiments.checkpoints import checkpoint_path
from mftma.experiments.subsets import sample_subsets
from mftma.devices import resolve_device
from mftma.run_lock import run_directory_lock

#: lzf (built into h5py) compresses activations to ~75 % at ~2x the speed of gzip level 1 (~67 %); the
#: default run's caching time is dominated by compression (benchmarks/bench_cache.py). The Fletcher-32
#: checksum (a few % of the time) makes the reader detect any damaged chunk instead of returning its bytes.
COMPRESSION = {"compression": "lzf", "fletcher32": True}
#: Randomly projected features are dense mixtures without the zeros of ReLU outputs: lzf stores them as they
#: are (ratio 1.00 on VGG-16 layers), while gzip level 1 after HDF5's byte shuffle keeps ~87 % of them in
#: float32 and float16 alike, at ~1.7x lzf's writing time (both filters built into HDF5; readers need nothing).
PROJECTED_COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True, "fletcher32": True}
#: Complete entries are flushed to disk at the end of every epoch and after this many seconds of work.
FLUSH_SECONDS = 30.0
#: The analysis layer that is the network's input: the same at every epoch, stored once and hard-linked.
INPUT_LAYER = "input"
#: Target size of one compressed chunk (bytes); a chunk holds up to one manifold's M rows.
CHUNK_BYTES = 2**20
#: New files track their free space persistently, so the space of dropped entries (:func:`drop_features`) is
#: reused by later entries instead of growing the file (HDF5 otherwise forgets free space when it closes).
FILE_SPACE = {"fs_strategy": "fsm", "fs_persist": True, "fs_threshold": 1}


@dataclass(frozen=True)
class CacheSettings:
    """Resolved settings of one caching run (the config's ``cache`` section with overrides applied)."""

    epochs: tuple[int, ...]
    layers: tuple[str, ...]
    analysis_layers: tuple[str, ...]
    subsets: tuple[str, ...]
    M: int
    P: int | None
    projection_dim: int
    pool: bool
    seed: int
    batch_size: int
    projection: str = "gaussian"
    device: str = "auto"
    dtype: str = "float32"

    def content_key(self) -> str:
        """JSON of the settings that change what an entry holds (epochs, layers and subsets only add entries;
        the device changes only float rounding)."""
        keys = ("M", "P", "projection_dim", "pool", "seed", "projection", "dtype")
        return json.dumps({key: asdict(self)[key] for key in keys}, sort_keys=True)


def cache_activations(run, *, epochs=None, layers=None, subsets=None, M=None, P=None, projection_dim=None,
                      pool=None, projection=None, device=None, dtype=None, rebuild=False, progress=True,
                      cache_bytes=DEFAULT_CACHE_BYTES) -> Path:
    """Cache the activations of a run's analysis layers for fixed example samples at its checkpoints.

    Parameters
    ----------
    run : mftma.experiments.run.Run
        The trained run.
    epochs, layers, subsets : sequence, optional
        Checkpoint epochs (default all), analysis layers and subsets (defaults from the run's cache config).
    M, P, projection_dim, pool : optional
        Examples per manifold, number of classes (None: all), the largest stored feature dimension, and
        per-channel spatial mean pooling of large layers (defaults from the run's cache config).
    projection : {"gaussian", "sparse"}, optional
        Random projection of layers wider than ``projection_dim`` (default: config ``cache.projection``).
    device : {"auto", "cpu", "cuda", "cuda:N"}, optional
        Device of the forward pass and projection (default: config ``cache.device``; auto = GPU if present).
    dtype : {"float32", "float16"}, optional
        Storage type of the features (default: config ``cache.dtype``); read back as float32.
    rebuild : bool
        Move an existing (e.g. stale) cache aside to ``activations.stale-<time>.h5`` and start anew.
    progress : bool
        Show a progress bar over the entries (epoch × example selection × layer).
    cache_bytes : int
        Memory budget for keeping a layer's projection matrix between batches.

    Returns
    -------
    pathlib.Path
        ``RUN_DIR/activations.h5``.

    Raises
    ------
    InputError
        Unknown epochs, layers or subsets, invalid settings, a CUDA device where torch sees no GPU, or
        features beyond float16's range with ``dtype="float16"``.
    DataFileError
        The existing cache is corrupt, foreign, stale or of an older format, another process writes into the
        run directory (see :mod:`mftma.run_lock`), a checkpoint gives NaN or inf features, or writing failed
        (e.g. disk full); entries already marked complete stay valid.
    """
    with run_directory_lock(run, "activation caching"):
        settings = resolve_settings(run, epochs, layers, subsets, M, P, projection_dim, pool, projection, device,
                                    dtype)
        torch_device = resolve_device(settings.device)
        samples = _draw_samples(run, settings)
        settings = replace(settings, P=len(next(iter(samples.values())).classes))  # None -> all classes
        path = Path(run.path) / CACHE_FILE
        if rebuild and path.exists():
            _move_aside(path)
        if not path.exists():
            _create(path, run, settings)
        with open_cache_file(path, "r+") as h5:
            _check_fresh(h5, path, run, settings)
            selections = _store_samples(h5, path, samples)
            _record_device(h5, torch_device)
            _EpochWriter(h5, run, settings, samples, selections, torch_device, cache_bytes, progress).write_all()
        return path


def resolve_settings(run, epochs, layers, subsets, M, P, projection_dim, pool, projection=None,
                     device=None, dtype=None) -> CacheSettings:
    """Apply overrides to the run's cache config and check epochs, layers and subsets against the run."""
    config = run.config.cache
    available = list(run.checkpoint_epochs())
    epochs = available if epochs is None else sorted({int(epoch) for epoch in epochs})
    _check_known("epoch", epochs, available)
    known_layers = list(run.build_model().analysis_layers)
    layers = config.layers if layers is None else layers
    layers = known_layers if layers == "all" else list(layers)
    _check_known("layer", layers, known_layers)
    overrides = {"subsets": subsets, "M": M, "P": P, "projection_dim": projection_dim, "pool": pool,
                 "projection": projection, "device": device, "dtype": dtype}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    chosen = replace(config, layers=tuple(layers), **overrides)  # CacheConfig validates the overrides
    return CacheSettings(tuple(epochs), chosen.layers, tuple(known_layers), chosen.subsets, chosen.M, chosen.P,
                         chosen.projection_dim, chosen.pool, chosen.seed, chosen.batch_size, chosen.projection,
                         chosen.device, chosen.dtype)


def _check_known(kind, requested, known):
    unknown = [name for name in requested if name not in known]
    if unknown or not requested:
        problem = f"unknown {kind}(s) {unknown}" if unknown else f"no {kind}s to cache"
        raise InputError(f"{problem}; valid {kind}s: {list(known)}")


def _draw_samples(run, settings):
    dataset = run.dataset()
    return sample_subsets(run.corruption(), np.asarray(dataset.y_test), dataset.num_classes, M=settings.M,
                          P=settings.P, seed=settings.seed, subsets=settings.subsets)


def _move_aside(path: Path) -> Path:
    """Rename ``path`` to ``STEM.stale-TIME[-N].h5``, never over an existing file."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    names = (f"{path.stem}.stale-{stamp}{f'-{n}' if n else ''}{path.suffix}" for n in itertools.count())
    target = next(path.with_name(name) for name in names if not path.with_name(name).exists())
    os.replace(path, target)
    return target


def _create(path: Path, run, settings: CacheSettings) -> None:
    """Write a cache file holding only the header, atomically."""
    with atomic_path(path) as temporary, h5py.File(temporary, "w", **FILE_SPACE) as h5:
        h5.attrs.update(_header(run, settings))


def _header(run, settings: CacheSettings) -> dict:
    metadata = run.metadata if isinstance(run.metadata, dict) else {}
    config = run.config
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "mftma_version": mftma.__version__,
        "run_settings_hash": config.settings_hash(),
        "cache_settings": settings.content_key(),
        "dataset": config.data.name,
        "corruption": config.corruption.kind,
        "epsilon": config.corruption.fraction,
        "seeds": json.dumps({"data": config.data.seed, "corruption": config.corruption.seed,
                             "training": config.training.seed, "cache": settings.seed}),
        "model": json.dumps(config.to_dict()["model"]),
        "config": json.dumps(config.to_dict()),
        "run_metadata": json.dumps(metadata, default=str),
    }


def _check_fresh(h5, path, run, settings: CacheSettings) -> None:
    version = int(h5.attrs["format_version"])
    if version != FORMAT_VERSION:
        raise DataFileError(f"activation cache {path} has the older format version {version} (each subset's "
                            f"features stored separately); it stays readable (`mftma analyze` uses it as it is), "
                            "but new entries are only written in the current format. Rerun with --rebuild to "
                            "move it aside and cache anew (about half the disk).")
    stored, current = h5.attrs["run_settings_hash"], run.config.settings_hash()
    if stored != current:
        raise DataFileError(f"stale activation cache {path}: it was written for run settings {stored}, the "
                            f"run now has {current}. Rerun with --rebuild (the old file is moved aside).")
    # caches written before the projection could be chosen used the Gaussian
    if json.dumps({"projection": "gaussian", **json.loads(h5.attrs["cache_settings"])},
                  sort_keys=True) != settings.content_key():
        raise DataFileError(f"activation cache {path} holds settings {h5.attrs['cache_settings']}, requested "
                            f"{settings.content_key()}. Rerun with --rebuild to start a new cache with them.")
    checkpoints = set(run.checkpoint_epochs())
    for name in h5:
        group = h5[name]
        epoch = group.attrs.get("epoch")
        if epoch is None or epoch not in checkpoints:
            continue
        if group.attrs["weights_hash"] != run.weights_hash(int(epoch)):
            raise DataFileError(
                f"stale activation cache {path}: epoch {epoch}'s checkpoint changed since it was cached (its "
                "weights hash differs from the recorded one). Rerun with --rebuild (the old file is moved aside).")


def _store_samples(h5, path, samples) -> dict[str, np.ndarray]:
    """Record each subset's sample and each selection's examples, or check they equal the ones recorded.

    Returns
    -------
    dict of str to ndarray
        The example indices of each selection's feature rows (sorted), by selection name.
    """
    selections = _selection_examples(samples)
    records = {f"selections/{name}": ({"indices": indices}, {"split": _split(samples, name)})
               for name, indices in selections.items()}
    for name, sample in samples.items():
        arrays = {"indices": sample.indices, "labels": sample.labels, "classes": sample.classes,
                  "rows": selection_rows(selections[sample.selection], sample.indices)}
        attrs = {"split": sample.split, "M": int(sample.M), "P": len(sample.classes), "selection": sample.selection}
        records[f"samples/{name}"] = (arrays, attrs)
    for name, (arrays, attrs) in records.items():
        if name in h5:
            if not all(np.array_equal(h5[name][key][()], value) for key, value in arrays.items()):
                raise DataFileError(f"stale activation cache {path}: the {name!r} sample differs from the one "
                                    "recorded. Rerun with --rebuild (the old file is moved aside).")
            continue
        entry = h5.create_group(name)
        for key, value in arrays.items():
            entry.create_dataset(key, data=np.asarray(value, dtype=np.int64), fletcher32=True)
        entry.attrs.update(attrs)
    _flush(h5)
    return selections


def _selection_examples(samples) -> dict[str, np.ndarray]:
    """The sorted example indices of each selection the samples draw on (the union of its groupings')."""
    selections = {}
    for sample in samples.values():
        selections.setdefault(sample.selection, []).append(sample.indices)
    return {name: np.unique(np.concatenate(parts)) for name, parts in selections.items()}


def _split(samples, selection: str) -> str:
    return next(sample.split for sample in samples.values() if sample.selection == selection)


def _record_device(h5, device: torch.device) -> None:
    """Add ``device`` (e.g. ``cpu``, ``cuda:0 (NVIDIA H200)``) to the root attribute ``devices`` (JSON list)."""
    name = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    devices = json.loads(h5.attrs.get("devices", "[]"))
    if name not in devices:
        h5.attrs["devices"] = json.dumps([*devices, name])


def _flush(h5) -> None:
    try:
        h5.flush()
    except OSError as error:
        raise _write_error(h5, error) from None


def _write_error(h5, error) -> DataFileError:
    return DataFileError(f"writing the activation cache {h5.filename} failed ({error}); is the disk full? "
                         "Entries marked complete so far stay valid; free space and rerun to resume.")


def _stored(entry) -> bool:
    """Whether an entry holds its features: complete and not dropped."""
    return bool(entry.attrs.get("complete", False)) and not entry.attrs.get("dropped", False)


def drop_features(path, epoch: int, layers) -> list[str]:
    """Delete the stored features of ``layers`` at ``epoch``, keeping a record of each dropped entry.

    Each complete entry ``/epoch_XXXX/LAYER/SELECTION`` is replaced by an empty ``(0, N)`` placeholder with
    the attributes ``complete = True`` and ``dropped = True``: the epoch's weights hash, the samples and the
    layer records stay, so :meth:`~mftma.cache.reader.ActivationCache.entry_identity` (and with it the reuse
    of analysed cells) is unchanged, while reading the features raises a :class:`DataFileError` naming the
    entry and ``mftma cache RUN_DIR --epochs E --layers L``, which computes them again (the writer treats a
    dropped entry as missing). Files created by this version reuse the freed space for later entries
    (:data:`FILE_SPACE`); older files do not shrink.

    Parameters
    ----------
    path : str or pathlib.Path
        The activation cache (``RUN_DIR/activations.h5``); the caller holds the run directory's lock.
    epoch : int
        A cached epoch.
    layers : iterable of str
        Layers whose features to drop (those not cached at ``epoch`` are skipped).

    Returns
    -------
    list of str
        The entries dropped now, as ``LAYER/SELECTION``.
    """
    dropped = []
    with open_cache_file(Path(path), "r+") as h5:
        group = h5.get(epoch_key(epoch))
        for layer in layers if group is not None else ():
            for selection, entry in list(group.get(layer, {}).items()):
                if _stored(entry):
                    _replace_by_placeholder(group[layer], selection, entry)
                    dropped.append(f"{layer}/{selection}")
        _flush(h5)
    return dropped


def _replace_by_placeholder(layer_group, selection: str, entry) -> None:
    """Swap an entry for an empty record of it: written under a temporary name first, then moved in place."""
    temporary = f"{selection}.dropping"
    if temporary in layer_group:
        del layer_group[temporary]
    placeholder = layer_group.create_dataset(temporary, shape=(0, entry.shape[1]), dtype=entry.dtype)
    placeholder.attrs.update({"complete": True, "dropped": True, "rows": entry.shape[0]})
    del layer_group[selection]
    layer_group.move(temporary, selection)


def reuses_free_space(path) -> bool:
    """Whether the cache file keeps track of freed space across sessions (files created by this version)."""
    with h5py.File(path, "r") as h5:
        return bool(h5.id.get_create_plist().get_file_space_strategy()[1])


class _EpochWriter:
    """Fills the missing entries of every requested epoch, one forward pass per batch for all layers."""

    def __init__(self, h5, run, settings, samples, selections, device, cache_bytes, progress):
        self.h5, self.run, self.settings, self.device = h5, run, settings, device
        self.selections = selections  # example indices of each selection's rows
        self.splits = {name: _split(samples, name) for name in selections}
        self.subsets = {name: [subset for subset, sample in samples.items() if sample.selection == name]
                        for name in selections}
        self.M = int(settings.M)
        self.cache_bytes = cache_bytes
        self.reducers: dict[str, BatchReducer] = {}
        self.inputs: dict[str, h5py.Dataset | None] = {}  # a complete input entry per selection, once known
        self.dataset = run.dataset()
        total = len(settings.epochs) * len(settings.layers) * len(selections)
        self.bar = progress_bar(total=total, unit="entry", desc="caching", enabled=progress)
        self.flushed = time.monotonic()

    def write_all(self) -> None:
        with self.bar:
            for epoch in self.settings.epochs:
                self.write_epoch(epoch)

    def write_epoch(self, epoch: int) -> None:
        group = self._epoch_group(epoch)
        pending = {selection: self._pending_layers(group, selection) for selection in self.selections}
        self.bar.update(sum(len(self.settings.layers) - len(layers) for layers in pending.values()))
        if not any(pending.values()):
            return
        model = self.run.load_model(epoch).eval().to(self.device)
        for selection, layers in pending.items():
            layers = self._link_input(group, selection, layers)
            if layers:
                self.bar.set_description(f"epoch {epoch} {selection}")
                self._write_selection(group, model, selection, layers)
                self.bar.update(len(layers))
                if time.monotonic() - self.flushed > FLUSH_SECONDS:
                    self._flush()
        self._flush()

    def _epoch_group(self, epoch: int):
        """The epoch's group; existing groups were checked against the checkpoint by :func:`_check_fresh`."""
        name = epoch_key(epoch)
        if name in self.h5:
            return self.h5[name]
        group = self.h5.create_group(name)
        group.attrs.update({"epoch": epoch, "weights_hash": self.run.weights_hash(epoch)})
        return group

    def _pending_layers(self, group, selection: str) -> list[str]:
        """Layers whose entry is missing, unfinished or dropped; unfinished and dropped entries are deleted to
        be redone."""
        pending = []
        for layer in self.settings.layers:
            entry = f"{layer}/{selection}"
            if entry in group and not _stored(group[entry]):
                del group[entry]
            if entry not in group:
                pending.append(layer)
        return pending

    def _link_input(self, group, selection: str, layers: list[str]) -> list[str]:
        """Hard-link the input entry to an earlier epoch's (the input does not depend on the weights).

        Returns the layers still to compute.
        """
        if INPUT_LAYER not in layers:
            return layers
        if selection not in self.inputs:
            entries = (self.h5[name].get(f"{INPUT_LAYER}/{selection}") for name in self.h5
                       if name.startswith("epoch_"))
            self.inputs[selection] = next((e for e in entries if e is not None and _stored(e)), None)
        if self.inputs[selection] is None:
            return layers
        group.require_group(INPUT_LAYER)[selection] = self.inputs[selection]
        self.bar.update(1)
        return [layer for layer in layers if layer != INPUT_LAYER]

    def _write_selection(self, group, model, selection: str, layers: list[str]) -> None:
        """Fill a selection's pending entries: one forward pass per batch for all its pending layers."""
        indices = self.selections[selection]
        inputs = self.dataset.x_train if self.splits[selection] == "train" else self.dataset.x_test
        device = next(model.parameters()).device
        entries = {}
        try:
            for start in range(0, len(indices), self.settings.batch_size):
                rows = indices[start:start + self.settings.batch_size]
                with torch.inference_mode():
                    batch = model.activations(inputs[torch.as_tensor(rows)].to(device), layers)
                for layer in layers:
                    features = self._reducer(layer, tuple(batch[layer].shape[1:]))(batch[layer])
                    self._check_finite(features, group, layer, selection)
                    if layer not in entries:
                        entries[layer] = self._create_entry(group, layer, selection, features.shape[1])
                    entries[layer][start:start + len(rows)] = self._stored(layer, features)
            for entry in entries.values():
                entry.attrs["complete"] = True
            if INPUT_LAYER in entries:
                self.inputs[selection] = entries[INPUT_LAYER]
        except DataFileError:
            raise
        except OSError as error:
            raise _write_error(self.h5, error) from None

    def _stored(self, layer: str, features: np.ndarray) -> np.ndarray:
        """``features`` in the storage type; float16 refuses finite values it cannot hold."""
        dtype = np.dtype(self.settings.dtype)
        if dtype == features.dtype:
            return features
        largest, limit = float(np.abs(features).max(initial=0.0)), float(np.finfo(dtype).max)
        if np.isfinite(largest) and largest > limit:
            raise InputError(f"layer {layer!r} has features up to {largest:.4g}, beyond the range of "
                             f"cache.dtype {dtype.name} ({limit:.4g}); cache it as float32")
        return features.astype(dtype, copy=False)

    def _check_finite(self, features: np.ndarray, group, layer: str, selection: str) -> None:
        """Refuse a batch of features holding NaN or inf, naming the entry and the checkpoint it came from."""
        finite = np.isfinite(features).all(axis=1)
        if finite.all():
            return
        epoch = int(group.attrs["epoch"])
        raise DataFileError(
            f"the features of epoch {epoch}, layer {layer!r}, selection {selection!r} (subsets "
            f"{', '.join(self.subsets[selection])}) hold NaN or inf ({int((~finite).sum())} of a batch of "
            f"{len(finite)} examples), computed from the checkpoint {checkpoint_path(self.run.path, epoch)}: the "
            "run diverged or the checkpoint is damaged. The entry is not marked complete; leave the epoch out "
            "(--epochs) or retrain the run")

    def _flush(self) -> None:
        _flush(self.h5)
        self.flushed = time.monotonic()

    def _reducer(self, layer: str, shape: tuple[int, ...]) -> BatchReducer:
        """The layer's reduction, planned once and checked against the one the file recorded."""
        if layer not in self.reducers:
            settings = self.settings
            reduction = LayerReduction.plan(layer, shape, settings.projection_dim, settings.pool, settings.seed,
                                            settings.projection)
            self._record_layer(reduction)
            self.reducers[layer] = BatchReducer(reduction, self.cache_bytes)
        return self.reducers[layer]

    def _record_layer(self, reduction: LayerReduction) -> None:
        layers = self.h5.require_group("layers")
        description = reduction.describe()
        if reduction.layer in layers:
            stored = layers[reduction.layer].attrs
            # keys added to the description since the file was written are checked by the cache settings
            if any(key in stored and not np.array_equal(stored[key], value) for key, value in description.items()):
                raise DataFileError(f"stale activation cache {self.h5.filename}: layer {reduction.layer!r} "
                                    "changed shape or reduction. Rerun with --rebuild.")
            return
        entry = layers.create_group(reduction.layer)
        entry.attrs.update(description)
        entry.attrs["index"] = self.settings.analysis_layers.index(reduction.layer)

    def _create_entry(self, group, layer: str, selection: str, features: int):
        rows = len(self.selections[selection])
        dtype = np.dtype(self.settings.dtype)
        chunk_rows = min(self.M, rows)
        chunk_cols = max(1, min(features, CHUNK_BYTES // (dtype.itemsize * chunk_rows)))
        projected = self.reducers[layer].reduction.projection_dim is not None
        entry = group.require_group(layer).create_dataset(
            selection, shape=(rows, features), dtype=dtype, chunks=(chunk_rows, chunk_cols),
            **(PROJECTED_COMPRESSION if projected else COMPRESSION))
        entry.attrs["complete"] = False
        return entry
