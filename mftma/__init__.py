"""mftma: where and when deep networks memorize.

Mean-field theoretic manifold analysis (capacity, radius, dimension, center correlation), linear probes,
an HDF5 activation cache of label-noise training runs, figures and layer rollback.

The estimator's public names are importable from here and loaded on first use, so that
``import mftma`` stays light::

    from mftma import analyze_manifolds, ManifoldAnalysis, data_dimension
    from mftma import manifold_analysis_corr, each_manifold_analysis_D1, alldata_dimension_analysis
    from mftma import simulated_capacity, ball_capacity, diagnose
"""
import importlib

__version__ = "0.1.0"

#: Public name -> module that defines it (imported lazily by :func:`__getattr__`).
_EXPORTS = {
    "analyze_manifolds": "mftma.estimator.analysis",
    "ManifoldAnalysis": "mftma.estimator.analysis",
    "GeometryResult": "mftma.estimator.analysis",
    "data_dimension": "mftma.estimator.dimension",
    "manifold_analysis_corr": "mftma.estimator.compat",
    "each_manifold_analysis_D1": "mftma.estimator.compat",
    "alldata_dimension_analysis": "mftma.estimator.compat",
    "simulated_capacity": "mftma.estimator.simulated",
    "SimulatedCapacity": "mftma.estimator.simulated",
    "ball_capacity": "mftma.estimator.theory",
    "ball_capacity_large_d": "mftma.estimator.theory",
    "gardner_capacity": "mftma.estimator.theory",
    "diagnose": "mftma.estimator.diagnostics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mftma' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
