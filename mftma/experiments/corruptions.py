"""Corrupted training sets (docs/method.md §4.1) with a record from which every grouping can be recovered.

=================  ======================================================================================
kind               what happens to the training set (the test set only changes under ``shuffle_pixels``)
=================  ======================================================================================
``none``           nothing
``permute``        a fraction ``fraction`` of the examples, chosen at random, get a random *wrong* label
``random_labels``  every example gets a random wrong label (``permute`` with fraction 1)
``shuffle_pixels`` one fixed random permutation of the pixel positions, the same for every image,
                   test images included (a change of input representation, Zhang et al. 2017)
``random_pixels``  a new random permutation of the pixel positions for every image
``gaussian``       inputs replaced by Gaussian noise with each channel's training mean and variance
=================  ======================================================================================

A randomized label is drawn uniformly from the *other* ``C - 1`` classes, never the true one. So every
example in ``permuted_mask`` really is mislabeled: its accuracy against the training label measures pure
memorization, and its ``permuted`` (training label) and ``restored`` (true label) groupings always differ.
``fraction`` is the exact fraction of randomized labels (rounded to whole examples); kinds other than
``permute`` do not use it. Pixel corruptions permute the spatial positions of an input ``(C, *spatial)``
and move all channels of a position together; input corruptions drop the training set's concept values,
which described the original images (and ``shuffle_pixels`` those of the test set). Labels and inputs are drawn once from ``seed`` and stay fixed for
the whole run.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mftma.errors import DataFileError, InputError
from mftma.experiments.datasets import Dataset
from mftma.experiments.npz import load_npz, save_npz

CORRUPTIONS = ("none", "permute", "random_labels", "shuffle_pixels", "random_pixels", "gaussian")
_LABEL_KINDS = ("none", "permute", "random_labels")
_LABEL_FRACTION = {"random_labels": 1.0}
_RECORD_FORMAT = "mftma-corruption-record-1"


@dataclass(frozen=True, eq=False)
class CorruptionRecord:
    """How a training set was corrupted: enough to regroup its examples at any time.

    Attributes
    ----------
    kind : str
        One of :data:`CORRUPTIONS`.
    fraction : float
        Fraction of training examples whose label was randomized (0 for input corruptions and ``none``).
    seed : int
        Seed the corruption was drawn from.
    true_labels : ndarray of int64, shape (n_train,)
        The original labels.
    train_labels : ndarray of int64, shape (n_train,)
        The labels the network is trained on.
    permuted_mask : ndarray of bool, shape (n_train,)
        True where the label was randomized (then ``train_labels != true_labels``).
    pixel_permutation : ndarray of int64 or None
        ``shuffle_pixels`` only: the permutation of flattened spatial positions applied to every image.
    """

    kind: str
    fraction: float
    seed: int
    true_labels: np.ndarray
    train_labels: np.ndarray
    permuted_mask: np.ndarray
    pixel_permutation: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in CORRUPTIONS:
            raise InputError(f"unknown corruption {self.kind!r}; valid kinds: {', '.join(CORRUPTIONS)}")
        shapes = {self.true_labels.shape, self.train_labels.shape, self.permuted_mask.shape}
        if len(shapes) != 1 or self.true_labels.ndim != 1:
            raise InputError(f"true_labels, train_labels and permuted_mask must be 1-D of one length, got {shapes}")
        if self.true_labels.dtype.kind not in "iu" or self.train_labels.dtype.kind not in "iu":
            raise InputError(f"labels must be integers, got {self.true_labels.dtype} and {self.train_labels.dtype}")
        if self.permuted_mask.dtype != bool or np.any(self.train_labels[~self.permuted_mask]
                                                      != self.true_labels[~self.permuted_mask]):
            raise InputError("permuted_mask must be boolean and cover every example whose label changed")

    def save(self, path: str | Path) -> None:
        """Write the record to ``path`` as ``.npz`` (atomically, no pickle)."""
        arrays = dict(format=np.str_(_RECORD_FORMAT), kind=np.str_(self.kind), fraction=np.float64(self.fraction),
                      seed=np.int64(self.seed), true_labels=self.true_labels, train_labels=self.train_labels,
                      permuted_mask=self.permuted_mask)
        if self.pixel_permutation is not None:
            arrays["pixel_permutation"] = self.pixel_permutation
        save_npz(path, arrays)

    @classmethod
    def load(cls, path: str | Path) -> CorruptionRecord:
        """Read a record written by :meth:`save`.

        Raises
        ------
        DataFileError
            The file is missing, unreadable, foreign or inconsistent.
        """
        arrays = load_npz(path, ("format", "kind", "fraction", "seed", "true_labels", "train_labels",
                                 "permuted_mask"), "corruption record")
        if str(arrays["format"]) != _RECORD_FORMAT:
            raise DataFileError(f"{path} is not an mftma corruption record (format {arrays['format']})")
        try:
            return cls(kind=str(arrays["kind"]), fraction=float(arrays["fraction"]), seed=int(arrays["seed"]),
                       true_labels=arrays["true_labels"], train_labels=arrays["train_labels"],
                       permuted_mask=arrays["permuted_mask"], pixel_permutation=arrays.get("pixel_permutation"))
        except InputError as error:
            raise DataFileError(f"{path} is an inconsistent corruption record: {error}") from None


def corrupt(dataset: Dataset, kind: str = "permute", fraction: float = 0.2,
            seed: int = 0) -> tuple[Dataset, CorruptionRecord]:
    """Corrupt the training set of ``dataset``; see the module docstring for the kinds.

    Parameters
    ----------
    dataset : Dataset
        The clean data set (its ``y_train`` are the true labels).
    kind : str
        One of :data:`CORRUPTIONS`.
    fraction : float
        ``permute`` only: fraction epsilon in [0, 1] of training examples that get a random wrong label.
    seed : int
        Seed of every random choice.

    Returns
    -------
    corrupted : Dataset
        The data set with training labels ``record.train_labels`` and corrupted training inputs; under
        ``shuffle_pixels`` the test inputs get the same pixel permutation, so test accuracy stays meaningful.
    record : CorruptionRecord
        The true labels, the training labels and which examples were randomized.

    Raises
    ------
    InputError
        Unknown kind, ``fraction`` outside [0, 1], or fewer than two classes for a label corruption.

    Examples
    --------
    >>> from mftma.experiments.datasets import load_dataset
    >>> noisy, record = corrupt(load_dataset("digits"), "permute", fraction=0.2, seed=0)
    >>> mislabeled = noisy.y_train.numpy() != record.true_labels
    >>> len(record.true_labels), int(record.permuted_mask.sum()), int(mislabeled.sum())
    (1347, 269, 269)
    """
    if kind not in CORRUPTIONS:
        raise InputError(f"unknown corruption {kind!r}; valid kinds: {', '.join(CORRUPTIONS)}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise InputError(f"corruption fraction (epsilon) must be a number in [0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    true_labels = dataset.y_train.numpy().astype(np.int64)
    label_fraction = float(fraction) if kind == "permute" else _LABEL_FRACTION.get(kind, 0.0)
    train_labels, mask = _randomize_labels(true_labels, dataset.num_classes, label_fraction, rng)
    x_train, permutation = _corrupt_inputs(kind, dataset.x_train.numpy(), rng)
    x_test = dataset.x_test if permutation is None else torch.from_numpy(_permute_pixels(dataset.x_test.numpy(),
                                                                                          permutation))
    record = CorruptionRecord(kind, label_fraction, seed, true_labels, train_labels, mask, permutation)
    concepts_train = dataset.concepts_train if kind in _LABEL_KINDS else None
    corrupted = dataclasses.replace(dataset, x_train=torch.from_numpy(x_train), y_train=torch.from_numpy(train_labels),
                                    x_test=x_test, concepts_train=concepts_train,
                                    concepts_test=dataset.concepts_test if permutation is None else None)
    return corrupted, record


def _randomize_labels(true_labels: np.ndarray, num_classes: int, fraction: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Give ``round(fraction * n)`` random examples a label drawn uniformly from the other classes."""
    count = math.floor(fraction * len(true_labels) + 0.5)
    mask = np.zeros(len(true_labels), dtype=bool)
    train_labels = true_labels.copy()
    if count == 0:
        return train_labels, mask
    if num_classes < 2:
        raise InputError(f"label corruption needs at least 2 classes, got {num_classes}")
    chosen = rng.choice(len(true_labels), size=count, replace=False)
    mask[chosen] = True
    train_labels[chosen] = (true_labels[chosen] + rng.integers(1, num_classes, size=count)) % num_classes
    return train_labels, mask


def _permute_pixels(x: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Inputs ``(n, C, *spatial)`` with the flattened spatial positions reordered by ``permutation``."""
    return x.reshape(*x.shape[:2], -1)[:, :, permutation].reshape(x.shape)


def _corrupt_inputs(kind: str, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Corrupted copy of the training inputs ``(n, C, *spatial)`` and the fixed pixel permutation if any."""
    n, channels = x.shape[:2]
    flat = x.reshape(n, channels, -1)
    positions = flat.shape[2]
    if kind == "shuffle_pixels":
        permutation = rng.permutation(positions)
        return _permute_pixels(x, permutation), permutation
    if kind == "random_pixels":
        permutations = rng.permuted(np.broadcast_to(np.arange(positions), (n, positions)), axis=1)
        return np.take_along_axis(flat, permutations[:, None, :], axis=2).reshape(x.shape), None
    if kind == "gaussian":
        mean = flat.mean(axis=(0, 2), dtype=np.float64, keepdims=True)
        variance = np.square(flat).mean(axis=(0, 2), dtype=np.float64, keepdims=True) - np.square(mean)
        std = np.sqrt(np.maximum(variance, 0.0))
        noise = rng.standard_normal(flat.shape, dtype=np.float32)
        return (noise * std.astype(np.float32) + mean.astype(np.float32)).reshape(x.shape), None
    return x, None
