"""``mftma flawed EXPERIMENT CONFIG --out DIR``: the intentionally flawed models and data of issue 6."""
from __future__ import annotations

import argparse

from mftma.cli.options import add_option

DESCRIPTION = """\
Experiments with intentionally flawed models and data (docs/method.md sections 3.3 and 4). CONFIG is a flawed
config: a run config (data, corruption, model, training, cache) plus a `flawed` section with the
experiment's settings; built-in ones are flawed_concepts, flawed_randomize, flawed_corruptions,
flawed_gradients, flawed_sizesweep (reduced, minutes on 2 CPU cores) and flawed_sizesweep_full (for a
GPU). Runs are trained into DIR/runs/<name> and resume when interrupted; tables go to DIR as CSV, and
analysis/fig_<experiment>.py DIR draws the figure (PNG and PDF) and a JSON of its numbers.
"""

#: Experiment -> (module, function, short help, what it does, settings of its `flawed` section, tables, script).
EXPERIMENTS = {
    "concepts": ("sweeps", "concept_experiment", "concept probes: generalizing, memorizing, untrained nets",
                 "concept regression probes (held-out R^2, least squares and ridge, shuffled-target baseline) per "
                 "layer of a generalizing network (true labels), a memorizing one (random labels) and untrained "
                 "networks, on test images with concept values (textures)",
                 "n_examples (test images probed; default all), methods ([linear, ridge]), n_splits (5), "
                 "untrained_seeds ([1]), seed (0)",
                 "concepts.csv, concept_models.csv", "fig_concepts.py"),
    "randomize": ("randomization", "randomization_experiment", "cascading and independent block randomization",
                  "cascading randomization (last k blocks re-initialised) and independent randomization of one "
                  "block of a trained network: test accuracy, and per layer MFTMA geometry and linear-probe "
                  "accuracy of a subset sample",
                  "epoch (default the last checkpoint), subset (test), M, P (default: the cache section's), "
                  "n_t (200), n_reps (10), seed (0: re-initialisation, estimator, probe folds), probe_folds (5)",
                  "randomization.csv, randomization_accuracy.csv", "fig_randomization.py"),
    "corruptions": ("sweeps", "corruption_experiment", "true labels vs label and input corruptions",
                    "the same network trained on true labels, eps-permuted labels, random labels, shuffled "
                    "pixels, random pixels and Gaussian inputs: training curves and per-layer geometry",
                    "kinds (all six), epochs ([final]; best, final or checkpoint numbers), layers (the cache "
                    "section's), n_t (200), n_reps (10), seed (0), probes (true)",
                    "corruption_curves.csv, corruption_geometry.csv", "fig_corruption_types.py"),
    "gradients": ("gradients", "gradient_experiment", "summed gradients of permuted vs unpermuted examples",
                  "per block and checkpoint, the norm of the summed loss gradient over permuted examples next to "
                  "that over as many unpermuted examples (divided by their number), and their ratio",
                  "max_epoch (last checkpoint included; default all), seed (0: the equal-size sample), "
                  "batch_size (512)",
                  "gradients.csv", "fig_gradients.py"),
    "sizesweep": ("sweeps", "size_sweep", "model-size sweep (double descent)",
                  "width-scaled networks trained with label noise: best- and final-epoch test accuracy against "
                  "the parameter count (double descent) and the final layer's capacity, radius and dimension",
                  "widths ([0.25, 0.5, 1, 2]), layer (default the last), epochs ([best, final]), subsets (the "
                  "cache section's), n_t (200), n_reps (10), seed (0), probes (false)",
                  "size_accuracy.csv, size_geometry.csv", "fig_model_size.py"),
}
_USES_SCHEDULER = ("corruptions", "sizesweep")


def register(subparsers) -> None:
    parser = subparsers.add_parser("flawed", help="flawed models: concepts, randomization, corruptions, "
                                   "gradients, model size", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    for name, (_, _, short, summary, settings, tables, script) in EXPERIMENTS.items():
        description = (f"{summary[0].upper()}{summary[1:]}.\n\nSettings of the config's `flawed` section "
                       f"(defaults in parentheses): {settings}.\n\nWrites DIR/{{{tables}}}; draw the figure "
                       f"with `python analysis/{script} DIR`.")
        sub = experiments.add_parser(name, help=short, description=description)
        sub.add_argument("config", metavar="CONFIG", help=f"flawed config file or built-in name, e.g. flawed_{name}")
        add_option(sub, "--out", "experiment folder (runs in DIR/runs, tables in DIR); rerunning resumes",
                   required=True, metavar="DIR")
        if name in _USES_SCHEDULER:
            add_option(sub, "--scheduler", "a running Dask scheduler for the analysis (default: a local cluster)")
        add_option(sub, "--no-progress")
    parser.set_defaults(func=run)


def run(args) -> int:
    import importlib

    from mftma.pipeline.flawed.experiment import check_settings, load_experiment

    module, function, _, _, _, tables, script = EXPERIMENTS[args.experiment]
    experiment = getattr(importlib.import_module(f"mftma.pipeline.flawed.{module}"), function)
    config, settings = load_experiment(args.config)
    settings = check_settings(experiment, settings)
    if args.experiment in _USES_SCHEDULER:
        settings["scheduler"] = args.scheduler
    experiment(config, args.out, progress=args.progress, **settings)
    print(f"{args.out}: wrote {tables}; draw the figure with `python analysis/{script} {args.out}`")
    return 0
