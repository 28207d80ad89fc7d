import numpy as np
import pytest
import torch

from mftma.errors import InputError
from mftma.experiments.concepts import CONCEPT_NAMES, concept_values
from mftma.experiments.datasets import load_dataset
from mftma.experiments.textures import CLASS_NAMES, HUE_FAMILIES, TEXTURE_FAMILIES, make_textures


def test_images_are_balanced_seeded_and_uint8():
    images, labels = make_textures(64, seed=3)
    assert images.shape == (64, 32, 32, 3) and images.dtype == np.uint8
    assert len(CLASS_NAMES) == len(HUE_FAMILIES) * len(TEXTURE_FAMILIES) >= 10
    assert np.array_equal(np.bincount(labels), np.full(16, 4))
    again, same_labels = make_textures(64, seed=3)
    assert np.array_equal(images, again) and np.array_equal(labels, same_labels)
    assert not np.array_equal(make_textures(64, seed=4)[0], images)
    with pytest.raises(InputError, match="integer >= 1"):
        make_textures(0)


def test_dominant_hue_and_texture_show_in_the_concepts():
    images, labels = make_textures(320, seed=0)
    values = concept_values(images)
    hue_index, texture_index = np.divmod(labels, len(TEXTURE_FAMILIES))
    for index, hue in enumerate(HUE_FAMILIES):
        own = values[hue][hue_index == index].mean()
        others = max(values[other][hue_index == index].mean() for other in HUE_FAMILIES if other != hue)
        assert own > 0.3 and own > 3 * others
    contrast = {family: np.median(values["contrast"][texture_index == index])
                for index, family in enumerate(TEXTURE_FAMILIES)}
    assert contrast["noise"] > contrast["blobs"] and contrast["checker"] > contrast["blobs"]
    assert all(values[name].std() > 0 for name in CONCEPT_NAMES)


def test_textures_dataset_carries_concepts():
    data = load_dataset("textures", seed=1, n_train=48, n_test=16)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 16 and data.class_names == CLASS_NAMES
    assert data.x_train.dtype == torch.float32
    np.testing.assert_allclose(data.x_train.mean(dim=(0, 2, 3)), 0, atol=1e-5)
    assert set(data.concepts_train) == set(CONCEPT_NAMES) == set(data.concepts_test)
    images, labels = make_textures(64, seed=1)
    expected = concept_values(images)
    for name in CONCEPT_NAMES:
        np.testing.assert_array_equal(data.concepts_train[name], expected[name][:48])
        np.testing.assert_array_equal(data.concepts_test[name], expected[name][48:])
    assert np.array_equal(data.y_test.numpy(), labels[48:])
