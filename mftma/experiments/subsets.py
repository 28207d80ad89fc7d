"""Fixed samples of P classes x M examples for the groupings of docs/method.md §1.2, and the null grouping.

``unpermuted``
    training examples whose label was kept, grouped by that (true = training) label;
``permuted``
    training examples whose label was randomized, grouped by their training label;
``restored``
    the *same* examples as ``permuted``, grouped by their true label;
``shuffled``
    the *same* examples as ``permuted``, grouped by a fresh random labelling that training never saw (a
    seeded random permutation of ``M`` copies of each class label over the examples): the null baseline,
    an unstructured cloud of these points at each layer;
``test``
    test examples grouped by their true label.

The groupings draw on three example *selections* (:data:`SELECTIONS`): ``kept`` (training examples whose
label was kept: ``unpermuted``), ``randomized`` (one selection of training examples whose label was
randomized: ``permuted``, ``restored`` and ``shuffled``) and ``test``. The activation cache stores each
selection's features once and each grouping as row indices into them.

The classes are the first ``P`` (``0 .. P-1``). ``permuted`` and ``restored`` are one selection of
``P * M`` randomized examples whose training labels *and* true labels both lie in those classes and in
which every class occurs exactly ``M`` times as a training label and exactly ``M`` times as a true label.
It is drawn by a seeded random greedy pass (keep an example while its training label and its true label
still need examples), completed with augmenting paths when the greedy pass falls short (a maximum flow, so
a selection is found whenever one exists); the examples of each (true label, training label) pair are
then drawn at random. Each permuted manifold is thus a random mix of true classes, and each restored
manifold a random mix of training labels. ``shuffled`` groups the selection (sorted by example index) by its
own labelling, so it is the same whether it is drawn with the others or later from a cached ``permuted``
sample (:func:`shuffled_sample`). Every subset draws from its own seeded generator, so a subset's sample does
not depend on which other subsets are requested.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mftma.errors import InputError
from mftma.names import SUBSETS

if TYPE_CHECKING:  # the cache reader uses this module and imports no torch
    from mftma.experiments.corruptions import CorruptionRecord

#: The example selection each grouping draws on: groupings of one selection hold the same examples.
SELECTIONS = {"unpermuted": "kept", "permuted": "randomized", "restored": "randomized", "shuffled": "randomized",
              "test": "test"}
#: Independent generator stream of each subset's draw (``[seed, stream]``); groupings of one selection share it.
_STREAMS = {"unpermuted": 0, "permuted": 1, "restored": 1, "shuffled": 1, "test": 3}
#: Stream of the ``shuffled`` labelling (drawn after the selection).
_SHUFFLED_LABELLING = 4


@dataclass(frozen=True, eq=False)
class SubsetSample:
    """The examples of one subset, grouped manifold by manifold.

    Attributes
    ----------
    subset : str
        One of :data:`SUBSETS`.
    split : str
        ``"train"`` or ``"test"``: the split ``indices`` point into.
    indices : ndarray of int64, shape (P * M,)
        Example indices; manifold ``p`` is ``indices[p * M:(p + 1) * M]``.
    labels : ndarray of int64, shape (P * M,)
        The grouping label of each example (training label for ``permuted``, the random label for
        ``shuffled``, true label otherwise).
    classes : ndarray of int64, shape (P,)
        The class of each manifold.
    M : int
        Examples per manifold.
    """

    subset: str
    split: str
    indices: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    M: int

    @property
    def selection(self) -> str:
        """The example selection of the subset (:data:`SELECTIONS`)."""
        return SELECTIONS[self.subset]


def available_subsets(record: CorruptionRecord) -> tuple[str, ...]:
    """The subsets that have examples under ``record`` (no ``permuted``/``restored`` without randomized labels)."""
    has_permuted, has_unpermuted = record.permuted_mask.any(), not record.permuted_mask.all()
    present = {"unpermuted": has_unpermuted, "permuted": has_permuted, "restored": has_permuted,
               "shuffled": has_permuted, "test": True}
    return tuple(subset for subset in SUBSETS if present[subset])


def sample_subsets(record: CorruptionRecord, test_labels, num_classes: int, M: int = 50, P: int | None = None,
                   seed: int = 0, subsets=SUBSETS) -> dict[str, SubsetSample]:
    """Draw the fixed example samples of the requested subsets.

    Parameters
    ----------
    record : CorruptionRecord
        True labels, training labels and the randomized-label mask of the training set.
    test_labels : array-like of int
        True labels of the test set.
    num_classes : int
        Number of classes of the data set.
    M : int
        Examples per manifold (at least 2).
    P : int, optional
        Number of classes (manifolds); the first ``P`` classes. Default: all classes.
    seed : int
        Seed of the sampling.
    subsets : sequence of str
        Which of :data:`SUBSETS` to draw.

    Returns
    -------
    dict of str to SubsetSample
        One sample per requested subset, in the order requested.

    Raises
    ------
    InputError
        Unknown subset, a subset without examples under ``record`` (see :func:`available_subsets`),
        invalid ``M`` or ``P``, or a class with fewer than ``M`` examples in a subset (the message names
        the class, the subset, how many there are and ``M``).

    Examples
    --------
    >>> from mftma.experiments.corruptions import corrupt
    >>> from mftma.experiments.datasets import load_dataset
    >>> data = load_dataset("digits")
    >>> _, record = corrupt(data, "permute", fraction=0.5)
    >>> samples = sample_subsets(record, data.y_test, data.num_classes, M=20)
    >>> samples["restored"].indices.shape, set(samples["permuted"].indices) == set(samples["restored"].indices)
    ((200,), True)
    """
    P, test_labels = _check_arguments(record, test_labels, num_classes, M, P, subsets)
    classes = np.arange(P, dtype=np.int64)
    samplers = {
        "unpermuted": lambda rng: _by_class("unpermuted", "train", record.train_labels, ~record.permuted_mask,
                                            classes, M, rng),
        "permuted": lambda rng: _regrouped(_permuted_selection(record, classes, M, rng), "permuted",
                                           record.train_labels, classes, M),
        "restored": lambda rng: _regrouped(_permuted_selection(record, classes, M, rng), "restored",
                                           record.true_labels, classes, M),
        "shuffled": lambda rng: shuffled_sample(_permuted_selection(record, classes, M, rng), classes, M, seed),
        "test": lambda rng: _by_class("test", "test", test_labels, np.ones(len(test_labels), bool), classes, M, rng),
    }
    return {subset: samplers[subset](np.random.default_rng([seed, _STREAMS[subset]])) for subset in subsets}


def shuffled_sample(selection, classes, M: int, seed: int) -> SubsetSample:
    """The ``shuffled`` grouping of a selection of randomized examples: a fresh, balanced random labelling.

    Parameters
    ----------
    selection : array-like of int, shape (P * M,)
        The training-set indices of the ``permuted`` sample, in any order.
    classes : array-like of int, shape (P,)
        The classes of the manifolds.
    M : int
        Examples per manifold.
    seed : int
        The cache seed; the labelling is drawn from ``default_rng([seed, 4])``.

    Returns
    -------
    SubsetSample
        Every class ``M`` times as a label, assigned to the selection sorted by example index by a seeded
        random permutation, so the result depends only on the set of examples and the seed.

    Raises
    ------
    InputError
        The selection does not hold ``P * M`` distinct examples.
    """
    selection, classes = np.unique(np.asarray(selection, dtype=np.int64)), np.asarray(classes, dtype=np.int64)
    if len(selection) != len(classes) * M:
        raise InputError(f"the shuffled grouping needs P * M = {len(classes) * M} distinct examples, got "
                         f"{len(selection)}")
    rng = np.random.default_rng([seed, _SHUFFLED_LABELLING])
    labels = np.full(int(selection.max()) + 1, -1, dtype=np.int64)
    labels[selection] = rng.permutation(np.repeat(classes, M))
    return _regrouped(selection, "shuffled", labels, classes, M)


def _check_arguments(record: CorruptionRecord, test_labels, num_classes: int, M, P,
                     subsets) -> tuple[int, np.ndarray]:
    """Validate the arguments of :func:`sample_subsets`; return ``P`` (default: all classes) and the test labels."""
    unknown = [subset for subset in subsets if subset not in SUBSETS]
    if unknown:
        raise InputError(f"unknown subset(s) {', '.join(map(repr, unknown))}; valid subsets: {', '.join(SUBSETS)}")
    empty = [subset for subset in subsets if subset not in available_subsets(record)]
    if empty:
        raise InputError(f"subset(s) {', '.join(empty)} have no examples under corruption {record.kind!r} with "
                         f"fraction {record.fraction}; available: {', '.join(available_subsets(record))}")
    if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 2:
        raise InputError(f"M (examples per manifold) must be an integer >= 2, got {M!r}")
    P = num_classes if P is None else P
    if isinstance(P, bool) or not isinstance(P, (int, np.integer)) or not 1 <= P <= num_classes:
        raise InputError(f"P (number of classes) must be an integer in [1, {num_classes}], got {P!r}")
    test_labels = np.asarray(test_labels)
    if test_labels.ndim != 1 or test_labels.dtype.kind not in "iu":
        raise InputError(f"test_labels must be a 1-D integer array, got shape {test_labels.shape} "
                         f"and dtype {test_labels.dtype}")
    return int(P), test_labels


def _too_few(label: int, subset: str, count: int, M: int) -> InputError:
    return InputError(f"class {label} has only {count} example(s) in subset {subset!r}, fewer than M={M}; "
                      "lower M, choose fewer classes (P) or use more data / a larger epsilon")


def _sample(subset: str, split: str, groups: list[np.ndarray], labels: np.ndarray, classes: np.ndarray,
            M: int) -> SubsetSample:
    indices = np.concatenate(groups).astype(np.int64)
    return SubsetSample(subset, split, indices, labels[indices].astype(np.int64), classes, M)


def _by_class(subset: str, split: str, labels: np.ndarray, eligible: np.ndarray, classes: np.ndarray, M: int,
              rng: np.random.Generator) -> SubsetSample:
    """``M`` random eligible examples of each class."""
    groups = []
    for label in classes:
        pool = np.flatnonzero(eligible & (labels == label))
        if len(pool) < M:
            raise _too_few(int(label), subset, len(pool), M)
        groups.append(np.sort(rng.choice(pool, size=M, replace=False)))
    return _sample(subset, split, groups, labels, classes, M)


def _regrouped(selection: np.ndarray, subset: str, labels: np.ndarray, classes: np.ndarray,
               M: int) -> SubsetSample:
    """The selected training examples grouped by ``labels`` (indexed by example)."""
    groups = [np.sort(selection[labels[selection] == label]) for label in classes]
    return _sample(subset, "train", groups, labels, classes, M)


def _permuted_selection(record: CorruptionRecord, classes: np.ndarray, M: int, rng: np.random.Generator) -> np.ndarray:
    """Randomized examples in which each class is ``M`` times a training label and ``M`` times a true label."""
    P = len(classes)
    candidates = np.flatnonzero(record.permuted_mask & (record.train_labels < P) & (record.true_labels < P))
    true, train = record.true_labels[candidates], record.train_labels[candidates]
    available = np.zeros((P, P), dtype=np.int64)
    np.add.at(available, (true, train), 1)
    for subset, counts in (("permuted", available.sum(axis=0)), ("restored", available.sum(axis=1))):
        if counts.min() < M:
            label = int(np.argmin(counts))
            raise _too_few(label, subset, int(counts[label]), M)
    taken = _greedy_counts(true, train, P, M, rng)
    _complete_by_augmenting_paths(taken, available, M)
    cells = true * P + train
    selection = [rng.choice(candidates[cells == cell], size=count, replace=False)
                 for cell, count in enumerate(taken.ravel()) if count]
    return np.concatenate(selection)


def _greedy_counts(true: np.ndarray, train: np.ndarray, P: int, M: int, rng: np.random.Generator) -> np.ndarray:
    """Counts per (true, training) label pair of a random greedy pass that keeps both label counts <= M."""
    taken = np.zeros((P, P), dtype=np.int64)
    by_true, by_train = np.zeros(P, dtype=np.int64), np.zeros(P, dtype=np.int64)
    for position in rng.permutation(len(true)):
        row, column = true[position], train[position]
        if by_true[row] < M and by_train[column] < M:
            taken[row, column] += 1
            by_true[row] += 1
            by_train[column] += 1
    return taken


def _complete_by_augmenting_paths(taken: np.ndarray, available: np.ndarray, M: int) -> None:
    """Raise every row and column sum of ``taken`` to ``M`` (0 <= taken <= available), in place.

    Each augmenting path starts at a true label short of ``M``, alternately adds a pair with spare
    examples and removes a taken pair, and ends at a training label short of ``M``.

    Raises
    ------
    InputError
        No such completion exists.
    """
    P = len(taken)
    while taken.sum() < P * M:
        path = _augmenting_path(taken, available, M)
        if path is None:
            raise InputError(f"no selection of randomized examples has exactly M={M} per training label (permuted) "
                             "and per true label (restored); lower M or choose fewer classes (P)")
        for step, (row, column) in enumerate(path):
            taken[row, column] += 1 if step % 2 == 0 else -1


def _augmenting_path(taken: np.ndarray, available: np.ndarray, M: int) -> list[tuple[int, int]] | None:
    """Breadth-first search for the (row, column) pairs of one augmenting path, or None."""
    starts = np.flatnonzero(taken.sum(axis=1) < M)
    column_short = taken.sum(axis=0) < M
    row_parent = {int(row): None for row in starts}  # row -> (column it was reached from) or None
    column_parent: dict[int, int] = {}  # column -> row it was reached from
    queue = deque(row_parent)
    while queue:
        row = queue.popleft()
        for column in np.flatnonzero(taken[row] < available[row]):
            column = int(column)
            if column in column_parent:
                continue
            column_parent[column] = row
            if column_short[column]:
                return _trace(column, row_parent, column_parent)
            for next_row in np.flatnonzero(taken[:, column] > 0):
                if int(next_row) not in row_parent:
                    row_parent[int(next_row)] = column
                    queue.append(int(next_row))
    return None


def _trace(column: int, row_parent: dict, column_parent: dict) -> list[tuple[int, int]]:
    """The pairs from a start row to ``column``: added, removed, added, ..., added."""
    pairs = []
    while column is not None:
        row = column_parent[column]
        pairs.append((row, column))
        column = row_parent[row]
        if column is not None:
            pairs.append((row, column))
    return pairs[::-1]
