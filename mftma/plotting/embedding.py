"""2-D views of one layer's outputs across epochs, coloured by label (the blog's Figure 1).

One column per epoch and three rows of panels: the unpermuted examples coloured by their label, the
permuted examples coloured by their (random) training label, and the same permuted examples, restored,
coloured by their true label (docs/method.md §1 defines the subsets). Within a column the projection is
fitted once, on the union of the shown examples, so the three rows share their axes: a class that forms a
cluster in the top row and a true class that forms one in the bottom row sit at comparable places.

The panels are drawn from arrays; reading them from an activation cache is
:mod:`mftma.pipeline.embedding`'s job (plotting reads result tables and arrays only).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from mftma.errors import InputError
from mftma.plotting.style import PAPER_WIDTH, paper_style

#: Rows of the figure: (subset, description of its colouring).
EMBEDDING_ROWS = (
    ("unpermuted", "unpermuted\nby label"),
    ("permuted", "permuted\nby training label"),
    ("restored", "restored (same examples)\nby true label"),
)
#: 2-D projections: PCA (numpy SVD, always available) or UMAP (needs the optional ``umap-learn``).
METHODS = ("pca", "umap")
#: Neighbours of the label-agreement score printed in each panel.
NEIGHBOURS = 5


def neighbour_agreement(X, labels, k: int = NEIGHBOURS) -> float:
    """Fraction of examples whose label is the majority label of their ``k`` nearest other examples.

    Euclidean distances in the full feature space (not the 2-D view); ties between labels go to the
    smallest label. About ``1 / number of labels`` for labels unrelated to the features, 1 for labels
    that form separated clusters.

    Examples
    --------
    >>> X = np.concatenate([np.zeros((6, 2)), np.full((6, 2), 10.0)]) + np.arange(12)[:, None] * 0.01
    >>> neighbour_agreement(X, np.repeat([0, 1], 6), k=3)
    1.0
    """
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    if not 1 <= k < len(X):
        raise InputError(f"k = {k} neighbours need more than k examples, got {len(X)}")
    squared = np.sum(X**2, axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * X @ X.T
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
    _, codes = np.unique(labels, return_inverse=True)
    votes = np.apply_along_axis(np.bincount, 1, codes[nearest], minlength=codes.max() + 1)
    return float(np.mean(votes.argmax(axis=1) == codes))


def project_2d(X, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, tuple[str, str]]:
    """Project the rows of ``X`` to two dimensions.

    Parameters
    ----------
    X : array_like, shape (n, N)
        One example per row; n >= 3.
    method : {"pca", "umap"}
        PCA by a singular value decomposition of the centred rows (component signs fixed so that each
        component's largest loading is positive), or UMAP (``umap-learn``, seeded by ``seed``).
    seed : int
        Seed of UMAP; PCA is deterministic.

    Returns
    -------
    coords : numpy.ndarray, shape (n, 2)
    axis_labels : tuple of str
        Names of the two axes, with each principal component's share of the variance for PCA.

    Examples
    --------
    >>> X = np.array([[0.0, 1.0, 5.0], [2.0, -1.0, 5.0], [4.0, -1.0, 5.0], [6.0, 1.0, 5.0]])
    >>> coords, labels = project_2d(X)
    >>> np.round(coords, 6).tolist()
    [[-3.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [3.0, 1.0]]
    >>> labels
    ('PC1 (83%)', 'PC2 (17%)')
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 3 or not np.isfinite(X).all():
        raise InputError(f"a 2-D projection needs a finite (n >= 3, N) array, got shape {X.shape}")
    if method == "umap":
        return _umap(X, seed), ("UMAP 1", "UMAP 2")
    if method != "pca":
        raise InputError(f"unknown projection {method!r}; choose one of {list(METHODS)}")
    centred = X - X.mean(axis=0)
    U, S, Vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(Vt[np.arange(len(Vt)), np.abs(Vt).argmax(axis=1)])
    coords = np.zeros((X.shape[0], 2))
    k = min(2, len(S))
    coords[:, :k] = (U[:, :k] * S[:k]) * signs[:k]
    total = float(np.sum(S**2)) or 1.0
    shares = [S[i] ** 2 / total if i < k else 0.0 for i in range(2)]
    return coords, tuple(f"PC{i + 1} ({share:.0%})" for i, share in enumerate(shares))


def _umap(X: np.ndarray, seed: int) -> np.ndarray:
    try:
        import umap
    except ImportError:
        raise InputError("the UMAP projection needs the optional package umap-learn "
                         "(`pip install umap-learn`); or use the PCA projection") from None
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(X)


def embedding_panels(views: dict, layer: str, titles: dict | None = None, method: str = "pca", seed: int = 0):
    """Scatter plots of 2-D projected features: one column per epoch, one row per subset of :data:`EMBEDDING_ROWS`.

    Parameters
    ----------
    views : dict
        ``{epoch: {subset: (X, labels, indices)}}`` in column order: each subset's features (n, N), the
        label each point is coloured by, and the example indices that identify the same example across
        subsets (``permuted`` and ``restored`` hold the same examples). Subsets of
        :data:`EMBEDDING_ROWS` absent from every epoch are left out.
    layer : str
        Name of the layer, for the title.
    titles : dict, optional
        ``{epoch: column title}`` (default ``"epoch <e>"``).
    method, seed
        The projection, see :func:`project_2d`. It is fitted per epoch on the union of the shown examples.

    Returns
    -------
    matplotlib.figure.Figure
        One scatter collection per (panel, label), labelled ``"class <label>"``, so every point of a colour
        group can be counted; each panel also prints :func:`neighbour_agreement` of its features and labels
        (in the full feature space, which the 2-D view may hide).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X, labels, indices = rng.normal(size=(20, 5)), np.repeat([0, 1], 10), np.arange(20)
    >>> fig = embedding_panels({0: {"unpermuted": (X, labels, indices)}}, "fc1")
    >>> [len(c.get_offsets()) for c in fig.axes[0].collections]
    [10, 10]
    """
    rows = [(subset, text) for subset, text in EMBEDDING_ROWS if any(subset in view for view in views.values())]
    if not views or not rows:
        raise InputError(f"nothing to draw: give features of {[s for s, _ in EMBEDDING_ROWS]} for at least one epoch")
    titles = titles or {}
    classes = np.unique(np.concatenate([view[s][1] for view in views.values() for s, _ in rows if s in view]))
    colors = dict(zip(classes.tolist(), _class_colors(len(classes))))
    with paper_style():
        fig, axes = plt.subplots(len(rows), len(views), figsize=(PAPER_WIDTH, 1.75 * len(rows) + 0.9),
                                 sharex="col", sharey="col", layout="constrained", squeeze=False)
        for col, (epoch, view) in enumerate(views.items()):
            projected, axis_labels = _project_view(view, [s for s, _ in rows], method, seed)
            for row, (subset, text) in enumerate(rows):
                ax = axes[row, col]
                if subset in projected:
                    coords, labels = projected[subset]
                    for label in np.unique(labels).tolist():
                        points = coords[labels == label]
                        ax.scatter(points[:, 0], points[:, 1], s=3, color=colors[label], alpha=0.7,
                                   linewidths=0, label=f"class {label}", rasterized=True)
                    score = neighbour_agreement(view[subset][0], labels)
                    ax.text(0.02, 0.98, f"{NEIGHBOURS}-NN {score:.2f}", transform=ax.transAxes, ha="left",
                            va="top", bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "linewidth": 0})
                ax.set_xticks([])
                ax.set_yticks([])
                if col == 0:
                    ax.set_ylabel(text)
            axes[0, col].set_title(titles.get(epoch, f"epoch {epoch}"))
            axes[-1, col].set_xlabel(f"{axis_labels[0]}, {axis_labels[1]}")
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colors[c], label=f"class {c}") for c in colors]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 10), frameon=False,
                   handletextpad=0.1, columnspacing=0.8)
        name = "PCA" if method == "pca" else "UMAP"
        fig.suptitle(f"{name} of layer {layer}, fitted per epoch on the shown examples\n{NEIGHBOURS}-NN: label "
                     f"agreement of the {NEIGHBOURS} nearest neighbours in all features "
                     f"(chance {1 / len(classes):.2f})")
    return fig


def _class_colors(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _project_view(view: dict, subsets: list, method: str, seed: int) -> tuple[dict, tuple[str, str]]:
    """Project the union of one epoch's examples; ``{subset: (coords, labels)}`` and the axis labels."""
    present = [subset for subset in subsets if subset in view]
    for subset in present:
        X, labels, indices = view[subset]
        if not len(X) == len(labels) == len(indices):
            raise InputError(f"{subset}: features, labels and indices differ in length "
                             f"({len(X)}, {len(labels)}, {len(indices)})")
    keys = np.concatenate([np.asarray(view[s][2]) for s in present])
    stacked = np.concatenate([np.asarray(view[s][0]) for s in present])
    unique, first = np.unique(keys, return_index=True)
    coords, axis_labels = project_2d(stacked[first], method, seed)
    projected = {}
    for subset in present:
        X, labels, indices = view[subset]
        projected[subset] = coords[np.searchsorted(unique, indices)], np.asarray(labels)
    return projected, axis_labels


def default_embedding_epochs(cached: list, best: int | None = None) -> dict:
    """``{epoch: title}``: the first cached epoch, the best, one between the best and the last, the last.

    The epoch between is the cached epoch nearest to the geometric mean of the best and the last (the
    checkpoint schedule is log-spaced). Duplicates collapse, keeping every role in the title.

    Examples
    --------
    >>> default_embedding_epochs([0, 1, 2, 4, 8, 16, 32, 60], best=4)
    {0: 'epoch 0 (init)', 4: 'epoch 4 (best)', 16: 'epoch 16', 60: 'epoch 60 (last)'}
    """
    if not cached:
        raise InputError("the activation cache holds no epoch; run `mftma cache RUN_DIR`")
    cached = sorted(int(epoch) for epoch in cached)
    first, last = cached[0], cached[-1]
    best = first if best is None else int(best)
    if best not in cached:
        raise InputError(f"best epoch {best} is not cached; cached epochs: {cached}")
    middle = [epoch for epoch in cached if best < epoch < last]
    between = min(middle, key=lambda e: abs(np.log(e) - np.log(max(best, 1) * last) / 2)) if middle else None
    roles = {first: ["init"] if first == 0 else ["first"]}
    roles.setdefault(best, []).append("best")
    if between is not None:
        roles.setdefault(between, [])
    roles.setdefault(last, []).append("last")
    return {epoch: f"epoch {epoch}" + (f" ({', '.join(roles[epoch])})" if roles[epoch] else "")
            for epoch in sorted(roles)}


def penultimate_layer(layers: list) -> str:
    """The layer before the last analysed one (the last one when there is only one)."""
    if not layers:
        raise InputError("the activation cache holds no layer; run `mftma cache RUN_DIR`")
    return layers[-2] if len(layers) > 1 else layers[0]
