"""Point labels placed apart from each other and from the points (no overlapping text)."""
from __future__ import annotations

import numpy as np
from matplotlib.transforms import Bbox

#: Distances (points) of the label positions tried around each point, nearest first.
_RADII = (4.0, 10.0, 18.0, 28.0, 40.0, 54.0, 70.0)
_DIRECTIONS = 16
#: Half-size (points) of the square kept free around each marker.
_MARKER_HALF = 3.0


def annotate_apart(ax, points, texts, colors, fontsize: float = 8.0) -> list:
    """Label each point with its text at the nearest free position around it.

    Positions on rings of growing distance around each point are tried in turn; a label takes the first
    one where it overlaps no earlier label and no marker and stays inside the axes (or, when none is
    free, the one with the least overlap). Labels away from their point get a thin leader line. The
    figure's layout is computed first and then frozen, so that the placement holds in the saved file.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes whose limits and scales are final.
    points : array_like, shape (n, 2)
        Data coordinates of the points.
    texts : sequence of str
    colors : sequence of colours
    fontsize : float

    Returns
    -------
    list of matplotlib.text.Annotation
    """
    figure = ax.figure
    figure.canvas.draw()
    figure.set_layout_engine("none")
    renderer = figure.canvas.get_renderer()
    pixels = figure.dpi / 72.0
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    anchors = ax.transData.transform(points)
    frame = ax.get_window_extent(renderer)
    half = _MARKER_HALF * pixels
    taken = [Bbox.from_extents(x - half, y - half, x + half, y + half) for x, y in anchors]
    annotations = []
    for (x, y), point, text, color in zip(anchors, points, texts, colors):
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        (dx, dy, ha, va), box = min(_candidates(x, y, extent.width, extent.height, pixels),
                                    key=lambda candidate: _cost(candidate[1], taken, frame))
        leader = {"arrowstyle": "-", "color": color, "lw": 0.5, "shrinkA": 0, "shrinkB": 2}
        label = ax.annotate(text, point, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                            fontsize=fontsize, color=color, annotation_clip=False,
                            arrowprops=leader if np.hypot(dx, dy) > _RADII[0] else None)
        taken.append(box)
        annotations.append(label)
    return annotations


def _candidates(x, y, width, height, pixels):
    """``((dx, dy, ha, va), box)`` for each tried position, nearest first; box in display pixels."""
    for radius in _RADII:
        for angle in np.linspace(0, 2 * np.pi, _DIRECTIONS, endpoint=False):
            cos, sin = np.cos(angle), np.sin(angle)
            ha = "left" if cos > 0.3 else "right" if cos < -0.3 else "center"
            va = "bottom" if sin > 0.3 else "top" if sin < -0.3 else "center"
            left = x + radius * cos * pixels - {"left": 0.0, "center": width / 2, "right": width}[ha]
            bottom = y + radius * sin * pixels - {"bottom": 0.0, "center": height / 2, "top": height}[va]
            yield (radius * cos, radius * sin, ha, va), Bbox.from_bounds(left, bottom, width, height)


def _cost(box: Bbox, taken: list, frame: Bbox) -> float:
    """Area of ``box`` over earlier labels and markers plus its area outside ``frame``."""
    overlap = sum(_intersection(box, other) for other in taken)
    return overlap + box.width * box.height - _intersection(box, frame)


def _intersection(a: Bbox, b: Bbox) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)
