"""Import path of the original package: ``from mftma.alldata_dimension_analysis import ...``.

Importing this module makes ``mftma.alldata_dimension_analysis`` the module rather than the function
that ``from mftma import alldata_dimension_analysis`` gives; the module is therefore callable too, so
that both spellings keep working in any import order.
"""
import sys
import types

from mftma.estimator.compat import alldata_dimension_analysis

__all__ = ["alldata_dimension_analysis"]


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`alldata_dimension_analysis`."""

    def __call__(self, XtotT, perc=0.9):
        return alldata_dimension_analysis(XtotT, perc)


sys.modules[__name__].__class__ = _CallableModule
