"""Package attributes imported from their modules on first use (PEP 562), so that packages stay light."""
from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str], namespace: dict):
    """``(__getattr__, __dir__)`` for a package whose public names live in other modules.

    Parameters
    ----------
    package : str
        The package's name, for error messages.
    exports : dict
        Public name -> module that defines it.
    namespace : dict
        The package's ``globals()``: a name is stored there once imported.

    Examples
    --------
    >>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"}, namespace := {})
    >>> getattr_("sqrt")(4.0), "sqrt" in namespace, dir_()
    (2.0, True, ['sqrt'])
    """
    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
