import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from mftma.errors import InputError
from mftma.experiments.corruptions import CorruptionRecord
from mftma.experiments.subsets import (
    SUBSETS,
    _complete_by_augmenting_paths,
    _greedy_counts,
    available_subsets,
    sample_subsets,
    shuffled_sample,
)


def make_record(num_classes=5, per_class=60, fraction=0.5, seed=0):
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(num_classes), per_class)
    mask = rng.random(len(true)) < fraction
    train = true.copy()
    train[mask] = (true[mask] + rng.integers(1, num_classes, mask.sum())) % num_classes
    return CorruptionRecord("permute", fraction, seed, true, train, mask)


@pytest.fixture
def record():
    return make_record()


TEST_LABELS = np.repeat(np.arange(5), 12)


def test_groupings_follow_the_labels(record):
    samples = sample_subsets(record, TEST_LABELS, 5, M=10, seed=1)
    assert list(samples) == list(SUBSETS)
    for name, sample in samples.items():
        assert sample.subset == name and sample.M == 10
        assert np.array_equal(sample.classes, np.arange(5))
        assert sample.indices.shape == sample.labels.shape == (50,)
        assert np.array_equal(sample.labels, np.repeat(sample.classes, 10))
        for group in sample.indices.reshape(5, 10):
            assert len(set(group)) == 10
    unpermuted, permuted, restored, shuffled, test = samples.values()
    assert unpermuted.split == permuted.split == restored.split == shuffled.split == "train"
    assert test.split == "test"
    assert not record.permuted_mask[unpermuted.indices].any()
    assert np.array_equal(record.train_labels[unpermuted.indices], unpermuted.labels)
    assert np.array_equal(record.true_labels[unpermuted.indices], unpermuted.labels)
    assert record.permuted_mask[permuted.indices].all()
    assert np.array_equal(record.train_labels[permuted.indices], permuted.labels)
    assert np.array_equal(record.true_labels[restored.indices], restored.labels)
    assert np.array_equal(TEST_LABELS[test.indices], test.labels)


def test_permuted_and_restored_share_the_same_examples(record):
    samples = sample_subsets(record, TEST_LABELS, 5, M=12, seed=2)
    permuted, restored = samples["permuted"], samples["restored"]
    assert sorted(permuted.indices) == sorted(restored.indices)
    # different compositions: no restored manifold equals a permuted one
    permuted_groups = {frozenset(group) for group in permuted.indices.reshape(5, 12)}
    assert not permuted_groups & {frozenset(group) for group in restored.indices.reshape(5, 12)}
    # each permuted manifold mixes several true classes
    for group in permuted.indices.reshape(5, 12):
        assert len(set(record.true_labels[group])) >= 2


def test_shuffled_is_a_balanced_seeded_regrouping_of_the_permuted_examples(record):
    samples = sample_subsets(record, TEST_LABELS, 5, M=12, seed=2)
    permuted, restored, shuffled = samples["permuted"], samples["restored"], samples["shuffled"]
    assert sorted(shuffled.indices) == sorted(permuted.indices) and shuffled.selection == permuted.selection
    assert np.array_equal(np.bincount(shuffled.labels, minlength=5), np.full(5, 12))  # every class M times
    # a grouping training never saw: it is neither the training labels' nor the true labels' grouping
    for other in (permuted, restored):
        labels = record.train_labels if other is permuted else record.true_labels
        assert np.mean(shuffled.labels != labels[shuffled.indices]) > 0.5
        assert {frozenset(g) for g in other.indices.reshape(5, 12)} != {
            frozenset(g) for g in shuffled.indices.reshape(5, 12)}
    again = sample_subsets(record, TEST_LABELS, 5, M=12, seed=2, subsets=("shuffled",))["shuffled"]
    assert np.array_equal(again.indices, shuffled.indices) and np.array_equal(again.labels, shuffled.labels)
    derived = shuffled_sample(permuted.indices[::-1], permuted.classes, 12, seed=2)  # any order of the selection
    assert np.array_equal(derived.indices, shuffled.indices) and np.array_equal(derived.labels, shuffled.labels)
    other_seed = shuffled_sample(permuted.indices, permuted.classes, 12, seed=3)
    assert not np.array_equal(other_seed.indices, shuffled.indices)
    with pytest.raises(InputError, match="P \\* M = 60 distinct examples, got 59"):
        shuffled_sample(permuted.indices[:59], permuted.classes, 12, seed=2)


def test_samples_are_deterministic_and_independent_of_other_subsets(record):
    everything = sample_subsets(record, TEST_LABELS, 5, M=10, seed=4)
    alone = sample_subsets(record, TEST_LABELS, 5, M=10, seed=4, subsets=("restored", "test"))
    assert list(alone) == ["restored", "test"]
    for name in alone:
        assert np.array_equal(alone[name].indices, everything[name].indices)
    other = sample_subsets(record, TEST_LABELS, 5, M=10, seed=5)
    assert not np.array_equal(other["unpermuted"].indices, everything["unpermuted"].indices)


def test_first_P_classes(record):
    samples = sample_subsets(record, TEST_LABELS, 5, M=8, P=3)
    for sample in samples.values():
        assert np.array_equal(sample.classes, [0, 1, 2]) and set(sample.labels) == {0, 1, 2}
    assert set(record.true_labels[samples["permuted"].indices]) <= {0, 1, 2}
    assert set(record.train_labels[samples["restored"].indices]) <= {0, 1, 2}


def test_too_few_examples_name_class_subset_count_and_M(record):
    with pytest.raises(InputError, match=r"class 0 has only 12 example\(s\) in subset 'test', fewer than M=13"):
        sample_subsets(record, TEST_LABELS, 5, M=13, subsets=("test",))
    unpermuted = np.bincount(record.train_labels[~record.permuted_mask], minlength=5)
    label = int(np.argmin(unpermuted))
    with pytest.raises(InputError, match=f"class {label} has only {unpermuted[label]} .* 'unpermuted'"):
        sample_subsets(record, TEST_LABELS, 5, M=int(unpermuted.min()) + 1, subsets=("unpermuted",))
    permuted = np.bincount(record.train_labels[record.permuted_mask], minlength=5)
    with pytest.raises(InputError, match="subset 'permuted'"):
        sample_subsets(record, TEST_LABELS, 5, M=int(permuted.min()) + 1, subsets=("permuted",))


def test_bad_arguments(record):
    with pytest.raises(InputError, match="unknown subset.*'train'.*valid subsets: unpermuted, permuted"):
        sample_subsets(record, TEST_LABELS, 5, subsets=("train",))
    with pytest.raises(InputError, match="M .* >= 2"):
        sample_subsets(record, TEST_LABELS, 5, M=1)
    with pytest.raises(InputError, match=r"P .* in \[1, 5\]"):
        sample_subsets(record, TEST_LABELS, 5, P=6)
    with pytest.raises(InputError, match="test_labels must be a 1-D integer array"):
        sample_subsets(record, TEST_LABELS.astype(float), 5, M=2)


def test_available_subsets():
    assert available_subsets(make_record(fraction=0.5)) == SUBSETS
    assert available_subsets(make_record(fraction=0.0)) == ("unpermuted", "test")
    assert available_subsets(make_record(fraction=1.0)) == ("permuted", "restored", "shuffled", "test")
    with pytest.raises(InputError, match="permuted, restored, shuffled have no examples .* available: unpermuted, test"):
        sample_subsets(make_record(fraction=0.0), TEST_LABELS, 5, M=5)


def _max_flow(available, M):
    """Reference: maximum flow source -> true label -> training label -> sink with capacities M."""
    P = len(available)
    capacity = np.zeros((2 * P + 2, 2 * P + 2), dtype=np.int32)
    capacity[0, 1:P + 1] = M
    capacity[1:P + 1, P + 1:2 * P + 1] = available
    capacity[P + 1:2 * P + 1, -1] = M
    return maximum_flow(csr_matrix(capacity), 0, 2 * P + 1).flow_value


def test_augmenting_paths_find_a_selection_exactly_when_one_exists():
    rng = np.random.default_rng(0)
    feasible_seen = infeasible_seen = 0
    for _ in range(300):
        P, M = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        true = np.repeat(np.arange(P), M + int(rng.integers(0, 3)))
        train = (true + rng.integers(1, P, len(true))) % P
        available = np.zeros((P, P), dtype=np.int64)
        np.add.at(available, (true, train), 1)
        taken = _greedy_counts(true, train, P, M, rng)
        if _max_flow(available, M) == P * M:
            feasible_seen += 1
            _complete_by_augmenting_paths(taken, available, M)
            assert (taken >= 0).all() and (taken <= available).all()
            assert (taken.sum(axis=0) == M).all() and (taken.sum(axis=1) == M).all()
        else:
            infeasible_seen += 1
            with pytest.raises(InputError, match="no selection of randomized examples"):
                _complete_by_augmenting_paths(taken, available, M)
    assert feasible_seen > 50 and infeasible_seen > 50
