import numpy as np
import pytest
from skimage.color import rgb2gray, rgb2hsv
from skimage.feature import graycomatrix, graycoprops
from skimage.util import img_as_ubyte

from mftma.errors import InputError
from mftma.experiments.concepts import (
    COLOR_CONCEPTS,
    CONCEPT_NAMES,
    HUE_RANGES,
    TEXTURE_CONCEPTS,
    concept_values,
    glcm_statistics,
    hue_fractions,
)


def solid(rgb, size=6):
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (size, size, 3)).copy()


@pytest.mark.parametrize("rgb, name", [
    ((255, 0, 0), "red"), ((255, 128, 0), "orange"), ((255, 255, 0), "yellow"), ((0, 255, 0), "green"),
    ((0, 255, 255), "cyan"), ((0, 0, 255), "blue"), ((128, 0, 255), "purple"), ((255, 0, 200), "magenta"),
    ((255, 0, 40), "red"),
])
def test_pure_colors_fill_their_hue_range(rgb, name):
    fractions = hue_fractions(solid(rgb))
    assert fractions[name][0] == 1.0
    assert sum(fractions[other][0] for other in COLOR_CONCEPTS if other != name) == 0.0


def test_dull_pixels_have_no_hue_and_fractions_count_pixels():
    # gray (saturation 0), dark red (value 60 < 77), pale red (saturation 40 < 50): none counts
    for rgb in ((128, 128, 128), (60, 0, 0), (255, 215, 215)):
        assert all(values[0] == 0.0 for values in hue_fractions(solid(rgb)).values())
    image = solid((0, 0, 255), size=4)
    image[:1] = (255, 0, 0)
    image[1:2, :2] = (128, 128, 128)
    fractions = hue_fractions(np.stack([image, solid((0, 255, 0), size=4)]))
    np.testing.assert_array_equal(fractions["red"], [0.25, 0.0])
    np.testing.assert_array_equal(fractions["blue"], [0.625, 0.0])
    np.testing.assert_array_equal(fractions["green"], [0.0, 1.0])


def test_hue_fractions_match_scikit_image_hsv_away_from_boundaries():
    pixels = np.random.default_rng(2).integers(0, 256, size=(1, 200, 200, 3), dtype=np.uint8)
    hue, saturation, value = np.moveaxis(rgb2hsv(pixels[0]) * [180, 255, 255], -1, 0)
    edges = np.array([low for intervals in HUE_RANGES.values() for low, _ in intervals])
    clear = (np.abs(hue[..., None] - edges).min(axis=-1) > 1e-6) & (np.abs(saturation - 50) > 1e-6)
    colorful = (saturation >= 50) & (value >= 77)
    for name, intervals in HUE_RANGES.items():
        inside = np.zeros(hue.shape, dtype=bool)
        for low, high in intervals:
            inside |= (hue >= low) & (hue < high)
        one_pixel_each = hue_fractions(pixels[0][clear][:, None, None, :])[name]
        np.testing.assert_array_equal(one_pixel_each, (inside & colorful)[clear])
    assert clear.mean() > 0.99


def test_constant_image_glcm():
    statistics = glcm_statistics(solid((30, 140, 200), size=8))
    assert statistics == {"contrast": 0.0, "dissimilarity": 0.0, "homogeneity": 1.0, "ASM": 1.0, "energy": 1.0,
                          "correlation": 1.0}


def test_vertical_stripes_glcm_known_values():
    # columns alternate gray levels 0 and 255: every horizontal pair differs by 255
    image = np.zeros((5, 6, 3), np.uint8)
    image[:, ::2] = 255
    statistics = glcm_statistics(image)
    assert statistics["contrast"][0] == 255.0**2 and statistics["dissimilarity"][0] == 255.0
    assert statistics["homogeneity"][0] == pytest.approx(1 / (1 + 255.0**2))
    assert statistics["ASM"][0] == pytest.approx(0.5) and statistics["correlation"][0] == pytest.approx(-1.0)


def test_glcm_matches_scikit_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 7, 9, 3), dtype=np.uint8)
    images[:20] //= 50  # few gray levels: many repeated pairs
    images[3] = 17  # constant
    ours = glcm_statistics(images)
    for index, image in enumerate(images):
        matrix = graycomatrix(img_as_ubyte(rgb2gray(image)), [1], [0], levels=256, symmetric=True, normed=True)
        for name in TEXTURE_CONCEPTS:
            assert ours[name][index] == pytest.approx(graycoprops(matrix, name)[0, 0], rel=1e-10, abs=1e-12)


def test_concept_values_and_bad_images():
    images = np.random.default_rng(1).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    values = concept_values(images)
    assert tuple(values) == CONCEPT_NAMES and all(v.shape == (3,) for v in values.values())
    assert all(total <= 1.0 for total in sum(values[name] for name in COLOR_CONCEPTS))
    for bad in (images.astype(float), images[..., :2], np.zeros((2, 8, 1, 3), np.uint8)):
        with pytest.raises(InputError, match=r"uint8 RGB shaped \(n, H, W, 3\) with W >= 2"):
            concept_values(bad)
