"""``mftma diagnose``: are M, n_t and the projection dimension enough for one layer?"""
from __future__ import annotations

import argparse

from mftma.cli.simcap import SOURCE_HELP, add_source_arguments

DESCRIPTION = """\
Check whether the mean-field (MFTMA) numbers of one layer depend on the analysis settings. Three sweeps,
each repeated over --seeds seeds:

  M           subsample every class manifold to fewer examples (finite M inflates capacity);
  n_t         redraw the t vectors: the spread is the sampling error of the t average;
  projection  project the features to fewer random Gaussian directions.

Prints the mean +- standard deviation over seeds of capacity, radius and dimension for every setting (the
file written by --output adds the 95% confidence interval of the mean), and one plain-language verdict per sweep (e.g. "from M=25 to M=50,
capacity by -12% ...: more samples per manifold would change the answer").

"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diagnose", help="how capacity, radius and dimension of one layer move with M, n_t and projection",
        description=DESCRIPTION + SOURCE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_arguments(parser)
    parser.add_argument("--samples", nargs="+", type=int, metavar="M",
                        help="samples per manifold to subsample to (default: M/4, M/2, M)")
    parser.add_argument("--n-t-values", nargs="+", type=int, default=[50, 100, 200, 400], metavar="N",
                        help="numbers of t vectors to compare (default: 50 100 200 400)")
    parser.add_argument("--projections", nargs="+", type=int, metavar="N",
                        help="feature counts to project to (default: N/8, N/4, N/2, N)")
    parser.add_argument("--n-t", type=int, default=200, metavar="N",
                        help="t vectors of the M and projection sweeps, the setting being checked (default: 200)")
    parser.add_argument("--seeds", type=int, default=5, metavar="S", help="repeats per setting (default: 5)")
    parser.add_argument("--kappa", type=float, default=0.0, help="margin kappa (default: 0)")
    parser.add_argument("--n-reps", type=int, default=10, metavar="N",
                        help="restarts of the center-structure search (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of subsamples, projections and t vectors "
                                                             "(default: 0)")
    parser.add_argument("--output", metavar="PATH",
                        help="write the table as .csv, or table, verdicts and settings as .json")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.estimator.diagnostics import diagnose
    from mftma.pipeline.manifold_sources import load_manifolds

    manifolds, origin = load_manifolds(args.source, args.epoch, args.layer, args.subset)
    report = diagnose(manifolds, sample_counts=args.samples, n_t_values=args.n_t_values,
                      projection_dims=args.projections, n_t=args.n_t, n_seeds=args.seeds, kappa=args.kappa,
                      n_reps=args.n_reps, seed=args.seed, progress=args.progress)
    print(f"{origin}: P = {len(manifolds)}, N = {manifolds[0].shape[0]}, M = {report.settings['M']}")
    print(report.readable().to_string(index=False))
    print()
    for verdict in report.verdicts:
        print(verdict)
    if args.output:
        print(report.save(args.output))
    return 0
