"""``mftma diagnose``: are M, n_t and the projection dimension enough for one layer?"""
from __future__ import annotations

import argparse

from mftma.cli.options import add_deprecated_alias, add_option, add_options
from mftma.cli.simcap import SOURCE_HELP, add_source_arguments

DESCRIPTION = """\
Check whether the mean-field (MFTMA) numbers of one layer depend on the analysis settings. Three sweeps,
each repeated --n-seeds times with seeds derived from --seed:

  M           subsample every class manifold to fewer examples (finite M inflates capacity);
  n_t         redraw the t vectors: the spread is the sampling error of the t average;
  projection  project the features to fewer random Gaussian directions.

Prints the mean +- standard deviation over seeds of capacity, radius and dimension for every setting (the
file written by --out adds the 95% confidence interval of the mean), and one plain-language verdict per
sweep (e.g. "from M=25 to M=50, capacity by -12% ...: more samples per manifold would change the answer").

"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diagnose", help="how capacity, radius and dimension of one layer move with M, n_t and projection",
        description=DESCRIPTION + SOURCE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_arguments(parser)
    m_values = add_option(parser, "--M-values", "samples per manifold to subsample to (default: M/4, M/2, M)")
    n_values = add_option(parser, "--N-values", "feature counts to project to (default: N/8, N/4, N/2, N)")
    add_option(parser, "--n-t-values")
    add_option(parser, "--n-t", "t vectors of the M and projection sweeps, the setting being checked (default: 200)")
    n_seeds = add_option(parser, "--n-seeds")
    add_options(parser, "--kappa", "--n-reps")
    add_option(parser, "--seed", "seed of subsamples, projections and t vectors; repeat r of a setting uses the "
                                 "seed [--seed, sweep, setting, r] (default: 0)")
    out = add_option(parser, "--out", "write the table as .csv, or table, verdicts and settings as .json")
    add_option(parser, "--no-progress")
    for old, new in (("--samples", m_values), ("--projections", n_values), ("--seeds", n_seeds), ("--output", out)):
        add_deprecated_alias(parser, old, new)
    parser.set_defaults(func=run)


def run(args) -> int:
    from mftma.estimator.diagnostics import check_output_path, diagnose
    from mftma.pipeline.manifold_sources import layer_width, load_manifolds

    check_output_path(args.out)
    manifolds, origin = load_manifolds(args.source, args.epoch, args.layer, args.subset)
    report = diagnose(manifolds, sample_counts=args.M_values, n_t_values=args.n_t_values,
                      projection_dims=args.N_values, n_t=args.n_t, n_seeds=args.n_seeds, kappa=args.kappa,
                      n_reps=args.n_reps, seed=args.seed, progress=args.progress,
                      layer_width=layer_width(args.source, args.epoch, args.layer, args.subset))
    print(f"{origin}: P = {len(manifolds)}, N = {manifolds[0].shape[0]}, M = {report.settings['M']}")
    print(report.readable().to_string(index=False))
    print()
    for verdict in report.verdicts:
        print(verdict)
    if args.out:
        print(report.save(args.out))
    return 0
