"""``mftma analyze RUN_DIR``: geometry, data dimension and probe accuracy of every cached cell."""
from __future__ import annotations

import argparse

from mftma.cli.cache import add_cache_settings, cache_settings
from mftma.cli.options import add_option, add_options
from mftma.probes.classification import BACKENDS, DEFAULT_C, DEFAULT_FOLDS

DESCRIPTION = """\
Analyse the activation cache of a run (written by `mftma cache`): for every cached (epoch, layer, subset)
compute the MFTMA manifold capacity, radius, dimension, center correlation and K, the total data dimension
(participation ratio, 90 % explained-variance dimension), and the held-out accuracy of a linear softmax
probe trained with the subset's labels (stratified k-fold); the test subset also gets the accuracy of a
probe trained on the unpermuted training examples. Writes the tidy table (one row per run, epoch, layer,
subset and metric) to RUN_DIR/results/results.h5 and results.csv.

Work fans out over Dask: by default a local cluster with one single-threaded worker process per core;
--scheduler uses a running Dask cluster (its workers must see RUN_DIR at the same path). The analysis is
incremental: each finished cell is stored at once under RUN_DIR/results/cells/, an interrupted analysis
resumes, and rerunning skips finished cells. Cells computed with other settings or from a rebuilt cache
are never reused.

--stream: for a run whose full cache does not fit on disk. Instead of reading an existing cache, it goes
through the checkpoints one at a time: caches the epoch into RUN_DIR/activations.h5 (as `mftma cache` would,
with the caching options below; --epochs, --layers, --subsets then choose what to cache, default: the
config's), analyses all its cells, then deletes that epoch's features except those of --keep-layers and
--keep-epochs (default: keep none). The results and cell records are those of a normal analysis, so a later
`mftma analyze` with the same settings recomputes nothing; reading dropped features gives an error naming
the `mftma cache --epochs E --layers L` command that computes them again. The file holds the kept features
plus about one checkpoint's (the space of dropped features is reused). Resumable: rerunning the same command
skips finished epochs and redoes the epoch in progress.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze", help="MFTMA geometry and linear probes for every cached epoch, layer and subset",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding activations.h5")
    add_option(parser, "--epochs", "cached epochs to analyse (default: all)")
    add_option(parser, "--layers", "cached layers to analyse (default: all)")
    add_option(parser, "--subsets", "subsets among unpermuted, permuted, restored, shuffled, test (default: all "
                                    "cached)")
    add_options(parser, "--kappa", "--n-t", "--n-reps")
    add_option(parser, "--seed", "seed of the estimator's random draws and of the probes' folds (default: 0)")
    parser.add_argument("--no-probes", dest="probes", action="store_false",
                        help="skip the linear probes (geometry and data dimension only)")
    parser.add_argument("--probe-folds", type=int, default=DEFAULT_FOLDS, metavar="K",
                        help=f"stratified folds of the probes; needs K examples per class (default: {DEFAULT_FOLDS})")
    parser.add_argument("--probe-c", type=float, default=DEFAULT_C, metavar="C",
                        help=f"inverse L2 strength of the probes on standardized features (default: {DEFAULT_C})")
    parser.add_argument("--probe-backend", choices=BACKENDS, default="auto",
                        help="probe implementation: torch (batched folds, a GPU when present) or the "
                             "scikit-learn reference; auto = torch (default: auto)")
    add_options(parser, "--scheduler", "--workers", "--no-progress")
    streaming = parser.add_argument_group("streaming (--stream): cache, analyse and drop one checkpoint at a time")
    streaming.add_argument("--stream", action="store_true",
                           help="cache each checkpoint, analyse it, then drop its features (see above)")
    streaming.add_argument("--keep-layers", nargs="+", default=(), metavar="LAYER",
                           help="layers whose features stay in the cache at every epoch (default: none)")
    streaming.add_argument("--keep-epochs", type=int, nargs="+", default=(), metavar="EPOCH",
                           help="epochs whose features stay in the cache for every layer (default: none)")
    add_cache_settings(streaming)
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.errors import InputError
    from mftma.pipeline.analyze import analyze_run, warning_summary
    from mftma.results.table import RESULTS_CSV, RESULTS_H5, results_dir

    settings = dict(epochs=args.epochs, layers=args.layers, subsets=args.subsets, kappa=args.kappa, n_t=args.n_t,
                    n_reps=args.n_reps, seed=args.seed, probes=args.probes, probe_folds=args.probe_folds,
                    probe_C=args.probe_c, probe_backend=args.probe_backend, scheduler=args.scheduler,
                    n_workers=args.workers, progress=args.progress)
    cache = {key: value for key, value in cache_settings(args).items() if value is not None}
    if args.stream:
        from mftma.pipeline.stream import stream_run

        table = stream_run(args.run_dir, keep_layers=args.keep_layers, keep_epochs=args.keep_epochs,
                           cache_options=cache, **settings)
    else:
        given = [flag for flag, value in (("--keep-layers", args.keep_layers), ("--keep-epochs", args.keep_epochs))
                 if value] + [f"--{key.replace('_', '-')}" for key in cache]
        if given:
            raise InputError(f"{', '.join(given)} apply only with --stream (which caches as it analyses)")
        table = analyze_run(args.run_dir, **settings)
    cells = table[["epoch", "layer", "subset"]].drop_duplicates()
    directory = results_dir(args.run_dir)
    print(f"{len(cells)} cells, {len(table)} rows: {directory / RESULTS_H5} and {directory / RESULTS_CSV}")
    summary = warning_summary(table, args.run_dir)
    if summary:
        print(summary)
    return 0
