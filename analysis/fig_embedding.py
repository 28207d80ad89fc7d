"""2-D view of one layer's outputs across epochs (the blog's Figure 1), from the activation cache.

One column per epoch (default: the first cached epoch, the best, one between the best and the last, the
last) and three rows: unpermuted examples coloured by label, permuted examples by training label, and the
same permuted examples (restored) by true label. Each column's projection (PCA by default) is fitted on
the union of its shown examples, so the rows of a column share their axes. Written as
embedding_<layer>.<format>; `mftma plot` draws the default version of this figure.
"""
from __future__ import annotations

import _script


def run() -> None:
    args = _parse()
    from mftma.cache.reader import ActivationCache
    from mftma.experiments.run import Run
    from mftma.pipeline.embedding import cache_embedding
    from mftma.pipeline.figures import best_epoch

    with ActivationCache(args.run_dir) as cache:
        cached = cache.epochs
    best = best_epoch(Run(args.run_dir).metrics(), cached, "cached")
    layer, figure = cache_embedding(args.run_dir, args.layer, args.epochs, best, args.method, args.seed)
    _script.save(figure, args, f"embedding_{layer}")


def _parse():
    from mftma.plotting.embedding import METHODS

    parser = _script.parser(__doc__)
    parser.add_argument("--layer", metavar="LAYER", help="cached layer (default: the penultimate cached layer)")
    parser.add_argument("--epochs", nargs="+", type=int, metavar="EPOCH",
                        help="cached epochs, one column each (default: first, best, one between, last)")
    parser.add_argument("--method", choices=METHODS, default="pca",
                        help="2-D projection: pca, or umap if umap-learn is installed (default: pca)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the UMAP projection (default: 0)")
    return parser.parse_args()


if __name__ == "__main__":
    _script.main(run)
