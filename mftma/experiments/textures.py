"""Generated 32 x 32 RGB texture images: 16 classes = 4 dominant hues x 4 texture families.

An image mixes a saturated *foreground* color, whose hue lies in its class's hue family, with a random
duller *background* color through a pattern ``p`` in [0, 1] (``rgb = p * foreground + (1 - p) * background``,
plus a little pixel noise). The texture family sets the pattern:

``stripes``
    a sinusoidal grating, period 3-12 pixels, random orientation and phase;
``checker``
    a hard-edged checkerboard, period 4-16 pixels, random orientation and phase;
``blobs``
    smooth random blobs: white noise blurred with a Gaussian of width 2-4 pixels, then sharpened;
``noise``
    fine grain: white noise blurred with a Gaussian of width 0.3-1 pixel, then sharpened.

Frequencies, orientations, coverage and both colors vary within a class, so the concept values of
:mod:`.concepts` (hue fractions, GLCM statistics) vary continuously and are measured on every image rather
than assumed. Everything is drawn from one seeded generator.
"""
from __future__ import annotations

import numpy as np

from mftma.errors import InputError

#: Foreground hue of each hue family: an interval on OpenCV's hue scale (0-180; red wraps around 0).
HUE_FAMILIES: dict[str, tuple[float, float]] = {
    "red": (-7.0, 7.0),
    "yellow": (27.0, 37.0),
    "green": (45.0, 70.0),
    "blue": (103.0, 122.0),
}
TEXTURE_FAMILIES = ("stripes", "checker", "blobs", "noise")
#: Class ``hue_index * len(TEXTURE_FAMILIES) + texture_index`` is named ``"<hue> <texture>"``.
CLASS_NAMES = tuple(f"{hue} {texture}" for hue in HUE_FAMILIES for texture in TEXTURE_FAMILIES)
IMAGE_SIZE = 32
_PIXEL_NOISE = 0.02


def make_textures(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` texture images with balanced classes in random order.

    Parameters
    ----------
    n : int
        Number of images.
    seed : int
        Seed of every random choice.

    Returns
    -------
    images : ndarray of uint8, shape (n, 32, 32, 3)
        RGB images, channels last.
    labels : ndarray of int64, shape (n,)
        Class indices into :data:`CLASS_NAMES`.

    Examples
    --------
    >>> images, labels = make_textures(32, seed=0)
    >>> images.shape, images.dtype, sorted(set(labels.tolist())) == list(range(16))
    ((32, 32, 32, 3), dtype('uint8'), True)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"number of texture images must be an integer >= 1, got {n!r}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    hue_index, texture_index = np.divmod(labels, len(TEXTURE_FAMILIES))
    pattern = np.empty((n, IMAGE_SIZE, IMAGE_SIZE))
    for index, family in enumerate(TEXTURE_FAMILIES):
        members = np.flatnonzero(texture_index == index)
        pattern[members] = _PATTERNS[family](len(members), rng)
    foreground, background = (color[:, None, None].astype(np.float32) for color in _colors(hue_index, rng))
    weight = pattern[..., None].astype(np.float32)
    rgb = background + weight * (foreground - background)
    rgb += _PIXEL_NOISE * rng.standard_normal(rgb.shape, dtype=np.float32)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8), labels


def _colors(hue_index: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """RGB foreground colors in each image's hue family and random duller background colors, in [0, 1]."""
    from skimage.color import hsv2rgb

    n = len(hue_index)
    low, high = np.array(list(HUE_FAMILIES.values())).T
    foreground_hue = (rng.uniform(low[hue_index], high[hue_index]) % 180.0) / 180.0
    foreground = np.stack([foreground_hue, rng.uniform(0.6, 1.0, n), rng.uniform(0.6, 1.0, n)], axis=-1)
    background = np.stack([rng.uniform(0.0, 1.0, n), rng.uniform(0.0, 0.5, n), rng.uniform(0.15, 0.85, n)], axis=-1)
    return hsv2rgb(foreground[:, None, :])[:, 0], hsv2rgb(background[:, None, :])[:, 0]


def _rotated_coordinates(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(n, 32, 32)`` along and across a random orientation per image."""
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    angle = rng.uniform(0.0, np.pi, size=(n, 1, 1))
    return x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)


def _stripes(n: int, rng: np.random.Generator) -> np.ndarray:
    along, _ = _rotated_coordinates(n, rng)
    period = rng.uniform(3.0, 12.0, size=(n, 1, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1, 1))
    return 0.5 + 0.5 * np.sin(2 * np.pi * along / period + phase)


def _checker(n: int, rng: np.random.Generator) -> np.ndarray:
    along, across = _rotated_coordinates(n, rng)
    period = rng.uniform(4.0, 16.0, size=(n, 1, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(2, n, 1, 1))
    product = np.sin(2 * np.pi * along / period + phase[0]) * np.sin(2 * np.pi * across / period + phase[1])
    return (product > 0).astype(np.float64)


def _smoothed_noise(n: int, rng: np.random.Generator, width: tuple[float, float]) -> np.ndarray:
    """White noise blurred (periodically, by FFT) with a Gaussian of random width, sharpened into [0, 1]."""
    frequency = np.fft.fftfreq(IMAGE_SIZE)
    squared_frequency = frequency[:, None] ** 2 + frequency[None, :] ** 2
    sigma = rng.uniform(*width, size=(n, 1, 1))
    noise = rng.standard_normal((n, IMAGE_SIZE, IMAGE_SIZE))
    blurred = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-2 * np.pi**2 * sigma**2 * squared_frequency)).real
    standardized = (blurred - blurred.mean(axis=(1, 2), keepdims=True)) / blurred.std(axis=(1, 2), keepdims=True)
    offset = rng.uniform(-0.7, 0.7, size=(n, 1, 1))
    return 1.0 / (1.0 + np.exp(-4.0 * (standardized - offset)))


_PATTERNS = {
    "stripes": _stripes,
    "checker": _checker,
    "blobs": lambda n, rng: _smoothed_noise(n, rng, (2.0, 4.0)),
    "noise": lambda n, rng: _smoothed_noise(n, rng, (0.3, 1.0)),
}
