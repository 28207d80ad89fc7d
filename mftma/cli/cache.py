"""``mftma cache RUN_DIR``: record every analysed layer's activations at the run's checkpoints in HDF5."""
from __future__ import annotations

import argparse

from mftma.cli.options import add_option

DESCRIPTION = """\
Cache the activations of a trained run (written by `mftma train`) in RUN_DIR/activations.h5: for each
checkpoint epoch and analysis layer, the features of a fixed sample of P classes x M examples for each
subset (unpermuted; permuted, grouped by training label; restored, the same examples grouped by true label;
shuffled, the same examples grouped by a fresh random labelling, the null baseline; test). Each example's
features are stored once: permuted, restored and shuffled are groupings of the same stored rows. Layers with
more than --projection-dim features are reduced by a seeded random projection (the same matrix at every
epoch; --projection gaussian or sparse), optionally after per-channel spatial mean pooling (--pool). The
forward pass and projection run on --device (auto: the GPU when present). --dtype float16 halves the disk.
Defaults come from the `cache` section of the run's config.

The command is resumable: an interrupted run keeps every finished entry, and rerunning it completes only
the missing ones. A cache written for other run settings, samples or reduction, or for a checkpoint whose
weights changed, is refused as stale; --rebuild moves it aside (activations.stale-<time>.h5) and starts anew.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cache", help="cache layer activations of a trained run in HDF5", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `mftma train`")
    add_option(parser, "--epochs", "checkpoint epochs to cache (default: every checkpoint)")
    add_option(parser, "--layers", "analysis layer names, e.g. input conv1 logits (default: config cache.layers)")
    add_option(parser, "--subsets", "subsets among unpermuted, permuted, restored, shuffled, test "
                                    "(default: config cache.subsets)")
    add_cache_settings(parser)
    parser.add_argument("--rebuild", action="store_true",
                        help="move an existing (e.g. stale) cache aside and write a new one")
    add_option(parser, "--no-progress")
    parser.set_defaults(func=run)


def add_cache_settings(parser) -> None:
    """The options that override the run config's ``cache`` section (shared with ``mftma analyze --stream``)."""
    add_option(parser, "--M", "examples per class manifold (default: config cache.M, 50)")
    add_option(parser, "--P", "number of classes (default: config cache.P; all classes)")
    parser.add_argument("--projection-dim", type=int, metavar="N",
                        help="largest stored feature dimension; larger layers are randomly projected to N "
                             "(default: config cache.projection_dim, 5000)")
    parser.add_argument("--pool", action=argparse.BooleanOptionalAction, default=None,
                        help="average each channel of layers larger than --projection-dim over its spatial "
                             "positions before projecting (default: config cache.pool)")
    parser.add_argument("--projection", metavar="KIND",
                        help="random projection of layers wider than --projection-dim: gaussian (dense, the "
                             "original protocol) or sparse (sparse sign, ~10x faster on wide layers) "
                             "(default: config cache.projection)")
    add_option(parser, "--device", "auto (CUDA when present), cpu, cuda or cuda:N: runs the forward pass and the "
                                   "projection (default: config cache.device)")
    parser.add_argument("--dtype", choices=["float32", "float16"],
                        help="storage type of the features (default: config cache.dtype, float32)")


def cache_settings(args) -> dict:
    """The cache settings of :func:`add_cache_settings`'s options, as keyword arguments of ``cache_activations``."""
    return {"M": args.M, "P": args.P, "projection_dim": args.projection_dim, "pool": args.pool,
            "projection": args.projection, "device": args.device, "dtype": args.dtype}


def run(args) -> int:
    from mftma.cache import ActivationCache, cache_activations
    from mftma.experiments.run import Run

    path = cache_activations(Run(args.run_dir), epochs=args.epochs, layers=args.layers, subsets=args.subsets,
                             rebuild=args.rebuild, progress=args.progress, **cache_settings(args))
    with ActivationCache(path) as cache:
        entries = cache.entries()
        stored = entries["complete"] & ~entries["dropped"]
        dropped = f" ({int(entries['dropped'].sum())} dropped by a streaming analysis)" if entries["dropped"].any() else ""
        print(f"{path}: {int(stored.sum())} complete entries{dropped}, {len(cache.epochs)} epochs x "
              f"{len(cache.layers)} layers x {len(cache.subsets)} subsets")
    return 0
