"""``mftma simcap``: simulated capacity next to the mean-field estimate for one set of manifolds."""
from __future__ import annotations

import argparse

from mftma.cli.options import add_deprecated_alias, add_option, add_options

DESCRIPTION = """\
Measure the capacity of one layer's class manifolds by simulation and compare it with the mean-field
(MFTMA) estimate. The simulation labels a random half of the P manifolds +1 and the rest -1, projects all
points to N_c random Gaussian directions and tests exactly (a linear program, or a hard-margin SVM) whether
a hyperplane separates them; bisection on N_c finds where half of the dichotomies are separable, and the
simulated capacity is P / N_c with a confidence interval. Agreement means the mean-field number can be
trusted for this data.

"""

#: How SOURCE is read, shared with ``mftma diagnose``.
SOURCE_HELP = """\
SOURCE is a run directory (or its activations.h5; pick the entry with --epoch, --layer, --subset; default
the last epoch, the first cached subset and the deepest layer with at least P x M / 2 features, where a
cloud's capacity of about 2/M can still be simulated, or the widest layer if none is that wide) or an .npz /
.h5 file with an array named 'manifolds' of shape (P, N, M), features x samples per manifold.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simcap", help="simulated capacity vs the mean-field estimate, with a confidence interval",
        description=DESCRIPTION + SOURCE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_arguments(parser)
    parser.add_argument("--precision", type=float, default=0.05,
                        help="half-width of the separable fraction's confidence interval near 1/2; sets the "
                             "number of dichotomies per N_c (default: 0.05, i.e. 385)")
    parser.add_argument("--method", choices=["lp", "svm"], default="lp",
                        help="separability test: HiGHS linear program or cvxpy hard-margin SVM (default: lp)")
    add_options(parser, "--kappa", "--n-t", "--n-reps")
    add_option(parser, "--seed", "seed of dichotomies, projections and t vectors (default: 0)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="threads running separability tests (default: all cores)")
    out = add_option(parser, "--out", "also write both results and the curve to this JSON file")
    add_deprecated_alias(parser, "--json", out)
    add_option(parser, "--no-progress")
    parser.set_defaults(func=run)


def add_source_arguments(parser) -> None:
    """SOURCE and the cache entry options shared with ``mftma diagnose``."""
    parser.add_argument("source", metavar="SOURCE", help="run directory, activations.h5, or .npz / .h5 file")
    add_option(parser, "--epoch", "cached epoch (default: the last)")
    add_option(parser, "--layer", "cached layer (default: the deepest layer wide enough to simulate, see above)")
    add_option(parser, "--subset", "cached subset: unpermuted, permuted, restored, shuffled or test (default: the "
                                   "first cached)")


def run(args) -> int:
    import json

    from mftma.estimator.analysis import analyze_manifolds
    from mftma.pipeline.manifold_sources import load_manifolds
    from mftma.estimator.simulated import simulated_capacity
    from mftma.atomic import atomic_path
    from mftma.errors import InputError

    if args.kappa != 0:
        raise InputError(f"--kappa {args.kappa:g}: the simulated capacity tests separability at margin 0 only, "
                         "so it can be compared with the mean-field estimate at kappa = 0 only")
    if args.out and not args.out.endswith(".json"):
        raise InputError(f"--out must name a .json file, got {args.out}")
    manifolds, origin = load_manifolds(args.source, args.epoch, args.layer, args.subset)
    geometry = analyze_manifolds(manifolds, kappa=args.kappa, n_t=args.n_t, n_reps=args.n_reps, seed=args.seed)
    simulated = simulated_capacity(manifolds, precision=args.precision, seed=args.seed, method=args.method,
                                   n_jobs=args.jobs, progress=args.progress)
    ratio = simulated.alpha / geometry.capacity_avg
    print(f"{origin}: P = {len(manifolds)}, N = {manifolds[0].shape[0]}")
    print(f"simulated capacity   {simulated.alpha:.4f}  (95% CI {simulated.ci_low:.4f} - {simulated.ci_high:.4f}, "
          f"N_c = {simulated.N_c:.1f}, {simulated.timings['n_tests']} tests, {simulated.timings['total']:.1f} s)")
    print(f"mean-field capacity  {geometry.capacity_avg:.4f}  (R_M = {geometry.radius_avg:.3f}, "
          f"D_M = {geometry.dimension_avg:.2f}, {geometry.timings['total']:.1f} s)")
    inside = simulated.ci_low <= geometry.capacity_avg <= simulated.ci_high
    print(f"simulated / mean-field = {ratio:.3f}: the mean-field estimate is "
          f"{'inside' if inside else 'outside'} the simulation's confidence interval")
    if args.out:
        record = {"source": origin, "simulated": simulated.to_dict(),
                  "mean_field": {"capacity": geometry.capacity_avg, "radius": geometry.radius_avg,
                                 "dimension": geometry.dimension_avg, "settings": geometry.settings}}
        with atomic_path(args.out) as temporary:
            temporary.write_text(json.dumps(record, indent=2))
        print(args.out)
    return 0
