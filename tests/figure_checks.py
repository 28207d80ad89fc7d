"""Checks on the PNG files the figures are saved to."""
import matplotlib.pyplot as plt
import numpy as np


def distinct_colours(pixels) -> int:
    """Number of distinct colours (over all channels) of ``pixels``, an image read by ``plt.imread`` from a PNG.

    Matplotlib writes PNGs with 8 bits per channel, so the channels of a pixel pack exactly into one
    integer; counting those is much faster than ``np.unique(..., axis=0)`` over the pixel rows.

    Examples
    --------
    >>> distinct_colours(np.array([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]))
    2
    """
    channels = np.round(np.asarray(pixels) * 255).astype(np.uint32)
    packed = np.zeros(channels.shape[:2], np.uint32)
    for channel in np.moveaxis(channels, -1, 0):
        packed = packed << 8 | channel
    return len(np.unique(packed))


def assert_png_drawn(path, min_width: int = 1000) -> None:
    """The PNG at ``path`` is more than ``min_width`` pixels wide and not nearly blank (more than 20 colours)."""
    pixels = plt.imread(path)
    assert pixels.shape[1] > min_width, f"{path} is {pixels.shape[1]} pixels wide"
    assert distinct_colours(pixels) > 20, f"{path} is nearly blank"
