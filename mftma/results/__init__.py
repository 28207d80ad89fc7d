"""The tidy result tables of a run (docs/ARCHITECTURE.md, "results"): pandas and h5py only.

* :mod:`mftma.results.table`: the geometry and probe table (``mftma analyze``): schema, validation,
  atomic save and load.
* :mod:`mftma.results.rollback`: the rollback accuracy and geometry tables.
* :mod:`mftma.results.selections`: checks and the epoch x layer selections the figures and claims need.
"""
from mftma.results.rollback import load_rollback, load_rollback_geometry
from mftma.results.table import RESULT_COLUMNS, load_results, results_dir, save_results, validate_results

__all__ = ["RESULT_COLUMNS", "load_results", "load_rollback", "load_rollback_geometry", "results_dir",
           "save_results", "validate_results"]
