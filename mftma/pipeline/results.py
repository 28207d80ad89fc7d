"""Deprecated location of :mod:`mftma.results.table` (the results table); import from there instead."""
import warnings

from mftma.results.table import *  # noqa: F401,F403 (the deprecated names)

warnings.warn("mftma.pipeline.results is deprecated; import mftma.results.table (or mftma.results) instead",
              DeprecationWarning, stacklevel=2)
