"""mftma: where and when deep networks memorize.

Mean-field theoretic manifold analysis (capacity, radius, dimension, center correlation), linear probes,
an HDF5 activation cache of label-noise training runs, figures and layer rollback; the method is
described in docs/method.md.

The public names (listed in ``__all__`` and in the README's "Python API" section) are importable from
here. Each is loaded from its module on first use, so ``import mftma`` stays light: the estimator's
names never import torch, and the pipeline's names import it only when used::

    from mftma import analyze_manifolds, ManifoldAnalysis, data_dimension
    from mftma import load_config, train, Run, cache_activations, ActivationCache
    from mftma import analyze_run, load_results, rollback, load_rollback, plot_run, quickstart
"""
from mftma.lazy import lazy_exports

__version__ = "0.1.0"

#: Public name -> module that defines it (imported lazily by :func:`__getattr__`).
_EXPORTS = {
    # the estimator (docs/method.md §2)
    "analyze_manifolds": "mftma.estimator.analysis",
    "ManifoldAnalysis": "mftma.estimator.analysis",
    "GeometryResult": "mftma.estimator.analysis",
    "data_dimension": "mftma.estimator.dimension",
    "simulated_capacity": "mftma.estimator.simulated",
    "SimulatedCapacity": "mftma.estimator.simulated",
    "ball_capacity": "mftma.estimator.theory",
    "ball_capacity_large_d": "mftma.estimator.theory",
    "gardner_capacity": "mftma.estimator.theory",
    "diagnose": "mftma.estimator.diagnostics",
    # the original MFTMA functions
    "manifold_analysis_corr": "mftma.estimator.compat",
    "each_manifold_analysis_D1": "mftma.estimator.compat",
    "alldata_dimension_analysis": "mftma.estimator.compat",
    # the pipeline over a run directory
    "load_config": "mftma.experiments.config",
    "RunConfig": "mftma.experiments.config",
    "train": "mftma.experiments.training",
    "Run": "mftma.experiments.run",
    "cache_activations": "mftma.cache.writer",
    "ActivationCache": "mftma.cache.reader",
    "analyze_run": "mftma.pipeline.analyze",
    "load_results": "mftma.results.table",
    "rollback": "mftma.pipeline.rollback",
    "load_rollback": "mftma.results.rollback",
    "plot_run": "mftma.pipeline.figures",
    "quickstart": "mftma.pipeline.quickstart",
    # errors and warnings
    "MFTMAError": "mftma.errors",
    "InputError": "mftma.errors",
    "DataFileError": "mftma.errors",
    "MFTMAWarning": "mftma.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("mftma", _EXPORTS, globals())
