import numpy as np
import pytest
import torch

from mftma.errors import DataFileError, InputError
from mftma.experiments.corruptions import CORRUPTIONS, CorruptionRecord, corrupt
from mftma.experiments.datasets import Dataset


@pytest.fixture(scope="module")
def images():
    """A small (n, 3, 4, 5) image data set with 4 classes and distinct pixel values."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(2.0, 3.0, size=(400, 3, 4, 5)).astype(np.float32))
    y = torch.from_numpy(np.repeat(np.arange(4), 100))
    return Dataset("toy", x, y, x[:20].clone(), y[:20].clone(), 4, ("a", "b", "c", "d"))


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.333, 1.0])
def test_permute_randomizes_an_exact_fraction_to_wrong_labels(images, fraction):
    corrupted, record = corrupt(images, "permute", fraction=fraction, seed=1)
    expected = int(np.floor(fraction * 400 + 0.5))
    assert record.permuted_mask.sum() == expected and record.fraction == fraction
    assert np.array_equal(record.true_labels, images.y_train.numpy())
    assert np.array_equal(record.train_labels, corrupted.y_train.numpy())
    changed = record.train_labels != record.true_labels
    assert np.array_equal(changed, record.permuted_mask)
    assert torch.equal(corrupted.x_train, images.x_train)
    assert torch.equal(corrupted.x_test, images.x_test) and torch.equal(corrupted.y_test, images.y_test)


def test_random_labels_are_uniform_over_the_other_classes(images):
    _, record = corrupt(images, "random_labels", seed=0)
    assert record.permuted_mask.all() and record.fraction == 1.0
    offsets = (record.train_labels - record.true_labels) % 4
    assert set(offsets) == {1, 2, 3}
    assert np.bincount(offsets, minlength=4)[1:].min() > 100


def test_corruption_is_deterministic_by_seed(images):
    for kind in CORRUPTIONS:
        first, record = corrupt(images, kind, fraction=0.3, seed=5)
        second, again = corrupt(images, kind, fraction=0.3, seed=5)
        assert torch.equal(first.x_train, second.x_train)
        assert np.array_equal(record.train_labels, again.train_labels)
    _, other = corrupt(images, "permute", fraction=0.3, seed=6)
    assert not np.array_equal(corrupt(images, "permute", 0.3, seed=5)[1].permuted_mask, other.permuted_mask)


def test_shuffle_pixels_applies_one_permutation_to_every_image(images):
    corrupted, record = corrupt(images, "shuffle_pixels", seed=2)
    permutation = record.pixel_permutation
    assert sorted(permutation) == list(range(20)) and not record.permuted_mask.any()
    flat = images.x_train.numpy().reshape(400, 3, 20)
    np.testing.assert_array_equal(corrupted.x_train.numpy().reshape(400, 3, 20), flat[:, :, permutation])
    assert np.array_equal(record.train_labels, record.true_labels)
    # The same permutation reaches the test images: a change of representation, not of the task.
    test_flat = images.x_test.numpy().reshape(20, 3, 20)
    np.testing.assert_array_equal(corrupted.x_test.numpy().reshape(20, 3, 20), test_flat[:, :, permutation])
    assert torch.equal(corrupted.y_test, images.y_test)


def test_random_pixels_permutes_each_image_differently(images):
    corrupted, record = corrupt(images, "random_pixels", seed=2)
    assert record.pixel_permutation is None
    original, shuffled = images.x_train.numpy().reshape(400, 3, 20), corrupted.x_train.numpy().reshape(400, 3, 20)
    permutations = set()
    for before, after in zip(original, shuffled):
        order = np.argsort(before[0])
        positions = order[np.searchsorted(before[0, order], after[0])]  # after[0] == before[0, positions]
        np.testing.assert_array_equal(after, before[:, positions])  # all channels of a position move together
        permutations.add(tuple(positions))
    assert len(permutations) == 400


def test_gaussian_inputs_match_channel_mean_and_variance(images):
    corrupted, _ = corrupt(images, "gaussian", seed=3)
    x, noise = images.x_train.numpy(), corrupted.x_train.numpy()
    assert noise.shape == x.shape and not np.allclose(noise, x)
    np.testing.assert_allclose(noise.mean(axis=(0, 2, 3)), x.mean(axis=(0, 2, 3)), atol=0.1)
    np.testing.assert_allclose(noise.std(axis=(0, 2, 3)), x.std(axis=(0, 2, 3)), rtol=0.03)


def test_bad_kind_and_fraction_are_input_errors(images):
    with pytest.raises(InputError, match="unknown corruption 'flip'; valid kinds: none, permute"):
        corrupt(images, "flip")
    for fraction in (-0.1, 1.5, float("nan"), "0.2"):
        with pytest.raises(InputError, match=r"fraction \(epsilon\) must be a number in \[0, 1\]"):
            corrupt(images, "permute", fraction=fraction)


def test_record_save_load_round_trip_and_bad_files(images, tmp_path):
    for kind in ("permute", "shuffle_pixels"):
        _, record = corrupt(images, kind, fraction=0.25, seed=9)
        path = tmp_path / f"{kind}.npz"
        record.save(path)
        loaded = CorruptionRecord.load(path)
        assert (loaded.kind, loaded.fraction, loaded.seed) == (record.kind, record.fraction, record.seed)
        for field in ("true_labels", "train_labels", "permuted_mask"):
            assert np.array_equal(getattr(loaded, field), getattr(record, field))
            assert getattr(loaded, field).dtype == getattr(record, field).dtype
        if kind == "shuffle_pixels":
            assert np.array_equal(loaded.pixel_permutation, record.pixel_permutation)
        else:
            assert loaded.pixel_permutation is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(DataFileError, match="corruption record file not found"):
        CorruptionRecord.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "foreign.npz", labels=np.arange(3))
    with pytest.raises(DataFileError, match="not a corruption record: missing"):
        CorruptionRecord.load(tmp_path / "foreign.npz")
    np.savez(tmp_path / "pickled.npz", **{key: np.array([object()]) for key in (
        "format", "kind", "fraction", "seed", "true_labels", "train_labels", "permuted_mask")})
    with pytest.raises(DataFileError, match="without pickled objects"):
        CorruptionRecord.load(tmp_path / "pickled.npz")


def test_record_rejects_inconsistent_masks_and_labels(tmp_path):
    labels = np.arange(4)
    with pytest.raises(InputError, match="cover every example whose label changed"):
        CorruptionRecord("permute", 0.0, 0, labels, labels[::-1].copy(), np.zeros(4, bool))
    with pytest.raises(InputError, match="labels must be integers"):
        CorruptionRecord("none", 0.0, 0, labels * 1.0, labels * 1.0, np.zeros(4, bool))
    np.savez(tmp_path / "bad.npz", format="mftma-corruption-record-1", kind="none", fraction=0.0, seed=0,
             true_labels=labels, train_labels=labels, permuted_mask=np.zeros(3, bool))
    with pytest.raises(DataFileError, match="inconsistent corruption record"):
        CorruptionRecord.load(tmp_path / "bad.npz")


def test_concepts_survive_label_corruptions_only(images):
    with_concepts = Dataset(**{**images.__dict__, "concepts_train": {"red": np.arange(400.0)},
                               "concepts_test": {"red": np.arange(20.0)}})
    for kind in CORRUPTIONS:
        corrupted, _ = corrupt(with_concepts, kind)
        assert (corrupted.concepts_train is not None) == (kind in ("none", "permute", "random_labels"))
        # Shuffled test pixels no longer show the textures their concept values describe.
        assert (corrupted.concepts_test is None) == (kind == "shuffle_pixels")
        if kind != "shuffle_pixels":
            assert corrupted.concepts_test is with_concepts.concepts_test
