"""Shared look of mftma figures: paper-size fonts, metric and subset names, saving."""
from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from mftma.names import SUBSETS

#: Width of a two-column paper figure, in inches.
PAPER_WIDTH = 7.0

#: Axis and colorbar labels of the metrics in the results table.
METRIC_LABELS = {
    "capacity": "capacity $\\alpha_M$",
    "radius": "radius $R_M$",
    "dimension": "dimension $D_M$",
    "center_correlation": "center correlation $\\rho$",
    "K": "center-structure rank $K$",
    "participation_ratio": "participation ratio",
    "explained_variance_dim": "PCs for 90% variance",
    "probe_accuracy": "probe accuracy (held out)",
    "probe_accuracy_std": "probe accuracy s.d. (folds)",
    "transfer_probe_accuracy": "probe accuracy on test (trained on unpermuted)",
    "accuracy": "accuracy",
}

#: A fixed colour per subset (colour-blind safe Okabe-Ito palette).
SUBSET_COLORS = {
    "unpermuted": "#0072B2",
    "permuted": "#D55E00",
    "restored": "#009E73",
    "shuffled": "#999999",  # grey: the null baseline
    "test": "#CC79A7",
}

_RC = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 9,
    "figure.dpi": 100,
}


def paper_style():
    """Context manager applying paper-size fonts (all text at least 8 pt).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> with paper_style():
    ...     print(plt.rcParams["font.size"], plt.rcParams["axes.titlesize"])
    8.0 9.0
    """
    return mpl.rc_context(_RC)


def metric_label(metric: str) -> str:
    """Human-readable label of ``metric`` (its own name when unknown)."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def ordered_subsets(subsets) -> list[str]:
    """``subsets`` in the canonical display order; unknown names follow, sorted."""
    present = set(subsets)
    known = [name for name in SUBSETS if name in present]
    return known + sorted(present - set(known))


def subset_color(subset: str) -> str | None:
    """Fixed colour of ``subset`` (``None`` lets matplotlib choose for unknown subsets)."""
    return SUBSET_COLORS.get(subset)


def save_figure(fig: Figure, path_stem, formats=("png", "pdf"), dpi: int = 200) -> list[Path]:
    """Write ``fig`` to ``path_stem.<format>`` for each format, atomically.

    Each file is first written to a temporary file in the same directory and
    then moved into place, so an interrupted save never leaves a truncated figure.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path_stem : str or Path
        Output path without suffix; parent directories are created.
    formats : sequence of str
        Matplotlib output formats, e.g. ``("png", "pdf")``.
    dpi : int
        Resolution of raster formats.

    Returns
    -------
    list of Path
        The written files, in the order of ``formats``.

    Examples
    --------
    >>> import matplotlib.pyplot as plt, tempfile, pathlib
    >>> fig, ax = plt.subplots(); _ = ax.plot([0, 1])
    >>> paths = save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "line")
    >>> [p.suffix for p in paths]
    ['.png', '.pdf']
    """
    from mftma.atomic import atomic_write

    stem = Path(path_stem)
    written = []
    for fmt in formats:
        target = stem.with_name(f"{stem.name}.{fmt}")
        atomic_write(target, lambda temporary: fig.savefig(temporary, format=fmt, dpi=dpi, bbox_inches="tight"))
        written.append(target)
    return written
