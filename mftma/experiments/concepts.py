"""Color and texture concept measures of RGB images (docs/method.md §3.3), one value per image.

Color concepts
    The fraction of *all* pixels whose hue lies in a range and that are colorful enough to have a hue
    (saturation >= 50 and value >= 77 on OpenCV's 8-bit scale, S and V in 0-255, hue in 0-180).
    Ranges are half-open ``[low, high)`` on the exact hue ``degrees / 2`` (no rounding to integers), so
    a pixel belongs to at most one range and the fractions of an image sum to at most 1.
Texture concepts
    Gray-level co-occurrence statistics with the definitions of ``skimage.feature.graycoprops`` for the
    GLCM of ``skimage.feature.graycomatrix(gray, [1], [0], levels=256, symmetric=True, normed=True)``
    (distance 1, angle 0), where ``gray = img_as_ubyte(rgb2gray(image))``. They are computed for a
    whole batch at once from the horizontal pixel pairs instead of building one 256 x 256 matrix per
    image; the tests check equality with scikit-image.
"""
from __future__ import annotations

import numpy as np

from mftma.errors import InputError

#: Hue ranges on OpenCV's scale (0-180), each a tuple of half-open ``[low, high)`` intervals.
HUE_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "red": ((0.0, 10.0), (165.0, 180.0)),
    "orange": ((10.0, 25.0),),
    "yellow": ((25.0, 40.0),),
    "green": ((40.0, 75.0),),
    "cyan": ((75.0, 100.0),),
    "blue": ((100.0, 125.0),),
    "purple": ((125.0, 145.0),),
    "magenta": ((145.0, 165.0),),
}
#: Smallest saturation and value (0-255) of a pixel that counts towards a hue range.
MIN_SATURATION, MIN_VALUE = 50, 77
COLOR_CONCEPTS = tuple(HUE_RANGES)
TEXTURE_CONCEPTS = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")
CONCEPT_NAMES = COLOR_CONCEPTS + TEXTURE_CONCEPTS


def _check_images(images, min_width: int = 1) -> np.ndarray:
    """uint8 RGB images as ``(n, H, W, 3)``; a single ``(H, W, 3)`` image gets a batch axis."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or images.shape[2] < min_width:
        raise InputError(f"images must be uint8 RGB shaped (n, H, W, 3) with W >= {min_width}, got dtype "
                         f"{images.dtype} and shape {images.shape}")
    return images


def hue_fractions(images) -> dict[str, np.ndarray]:
    """Fraction of pixels of each image in every hue range of :data:`HUE_RANGES`.

    Computed exactly in integer arithmetic (no rounding at range boundaries); it agrees with
    ``skimage.color.rgb2hsv`` (hue x 180, saturation and value x 255) away from the boundaries.

    Parameters
    ----------
    images : array-like of uint8, shape (n, H, W, 3) or (H, W, 3)
        RGB images.

    Returns
    -------
    dict of str to ndarray of shape (n,)

    Examples
    --------
    >>> red = np.zeros((4, 4, 3), np.uint8); red[..., 0] = 255
    >>> float(hue_fractions(red)["red"][0])
    1.0
    """
    scaled_hue, chroma, colorful = _scaled_hue(_check_images(images))
    fractions = {}
    for name, intervals in HUE_RANGES.items():
        inside = np.zeros(scaled_hue.shape, dtype=bool)
        for low, high in intervals:
            inside |= (scaled_hue >= low * chroma) & (scaled_hue < high * chroma)
        fractions[name] = (inside & colorful).mean(axis=(1, 2))
    return fractions


def _scaled_hue(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: hue on OpenCV's 0-180 scale times the chroma (an exact integer), the chroma, and whether
    saturation >= :data:`MIN_SATURATION` and value >= :data:`MIN_VALUE` (both on 0-255)."""
    red, green, blue = np.moveaxis(images.astype(np.int32), -1, 0)
    value = np.maximum(np.maximum(red, green), blue)
    chroma = value - np.minimum(np.minimum(red, green), blue)
    # Hue in units of 60 degrees times chroma; where two channels tie for the maximum both formulas agree.
    sector = np.where(value == red, green - blue,
                      np.where(value == green, 2 * chroma + blue - red, 4 * chroma + red - green))
    scaled_hue = np.mod(30 * sector, 180 * chroma, where=chroma > 0, out=np.zeros_like(chroma))
    colorful = (chroma > 0) & (255 * chroma >= MIN_SATURATION * value) & (value >= MIN_VALUE)
    return scaled_hue, chroma, colorful


def glcm_statistics(images) -> dict[str, np.ndarray]:
    """GLCM contrast, dissimilarity, homogeneity, ASM, energy and correlation of each image.

    Parameters
    ----------
    images : array-like of uint8, shape (n, H, W, 3) or (H, W, 3)
        RGB images (converted to 8-bit gray levels).

    Returns
    -------
    dict of str to ndarray of shape (n,)
        Keys :data:`TEXTURE_CONCEPTS`. A constant image has contrast 0 and homogeneity, ASM, energy and
        correlation 1 (scikit-image's convention for zero variance).

    Examples
    --------
    >>> flat = np.full((8, 8, 3), 90, np.uint8)
    >>> {key: float(value[0]) for key, value in glcm_statistics(flat).items()}
    {'contrast': 0.0, 'dissimilarity': 0.0, 'homogeneity': 1.0, 'ASM': 1.0, 'energy': 1.0, 'correlation': 1.0}
    """
    from skimage.color import rgb2gray
    from skimage.util import img_as_ubyte

    gray = img_as_ubyte(rgb2gray(_check_images(images, min_width=2))).astype(np.int64)
    n = len(gray)
    left, right = gray[:, :, :-1].reshape(n, -1), gray[:, :, 1:].reshape(n, -1)
    difference = (left - right).astype(np.float64)
    # The symmetric GLCM counts every pair in both orders; its row (= column) marginal is that of both ends.
    ends = np.concatenate([left, right], axis=1).astype(np.float64)
    mean = ends.mean(axis=1, keepdims=True)
    variance = ends.var(axis=1)
    covariance = ((left - mean) * (right - mean)).mean(axis=1)
    flat = variance < 1e-30  # std < 1e-15 as in scikit-image
    asm = _symmetric_pair_asm(left, right)
    return {
        "contrast": np.mean(difference**2, axis=1),
        "dissimilarity": np.mean(np.abs(difference), axis=1),
        "homogeneity": np.mean(1.0 / (1.0 + difference**2), axis=1),
        "ASM": asm,
        "energy": np.sqrt(asm),
        "correlation": np.where(flat, 1.0, covariance / np.where(flat, 1.0, variance)),
    }


def _symmetric_pair_asm(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Sum of squared entries of each image's normalized symmetric co-occurrence matrix.

    Every pair is counted as (left, right) and (right, left); an entry with count c contributes c^2,
    and c^2 = sum over its occurrences of (2 * rank + 1), rank = 0 .. c-1 in sorted order.
    """
    codes = np.sort(np.concatenate([left * 256 + right, right * 256 + left], axis=1), axis=1)
    total = codes.shape[1]
    positions = np.broadcast_to(np.arange(total), codes.shape)
    run_start = np.ones(codes.shape, dtype=bool)
    run_start[:, 1:] = codes[:, 1:] != codes[:, :-1]
    start_position = np.maximum.accumulate(np.where(run_start, positions, 0), axis=1)
    squares = (2 * (positions - start_position) + 1).sum(axis=1)
    return squares / float(total) ** 2


def concept_values(images) -> dict[str, np.ndarray]:
    """All concept measures of each image: :func:`hue_fractions` and :func:`glcm_statistics`.

    Returns a dict with the keys :data:`CONCEPT_NAMES`, each an array of shape (n,).
    """
    images = _check_images(images, min_width=2)
    return {**hue_fractions(images), **glcm_statistics(images)}
