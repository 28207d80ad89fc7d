"""Anchor-point solvers of the MFTMA estimator, one module per backend.

Every backend module exposes the same function::

    solve_cone_projections(points, t_vecs, kappa) -> list of (D_p+1, n_t) arrays

For manifold ``p`` with points ``S = points[p]`` (last row all ones) and each column ``t`` of
``t_vecs[p]``, it returns ``t - v = S @ alpha``, where ``v`` solves
``min_v ||v - t||^2  s.t.  S^T v <= -kappa`` and ``alpha >= 0`` are its multipliers
(docs/method.md §2.6). ``S @ alpha`` is unique even when ``alpha`` is not, and its last
coordinate is ``sum(alpha)``; :mod:`mftma.estimator.anchor` turns it into anchor points.

Backends: ``"cvxpy"`` (:mod:`.reference`, one QP per t vector), ``"numba"`` (:mod:`.numba_cpu`,
an active-set solve of the dual batched over t vectors and manifolds) and ``"cuda"``
(:mod:`.cuda`, the same active set in numba.cuda kernels).
"""
from __future__ import annotations

import importlib

from mftma.errors import InputError

#: Backend name -> module of this package implementing it.
BACKEND_MODULES = {"cvxpy": "reference", "numba": "numba_cpu", "cuda": "cuda"}


def select_backend(name: str = "auto") -> str:
    """Resolve a backend name.

    Parameters
    ----------
    name : str
        ``"auto"`` (``"cuda"`` when a CUDA GPU is usable, else ``"numba"``), ``"numba"``,
        ``"cuda"`` or ``"cvxpy"``.

    Returns
    -------
    str
        The concrete backend name.

    Raises
    ------
    InputError
        If ``name`` is not a known backend.

    Examples
    --------
    >>> select_backend("cvxpy")
    'cvxpy'
    """
    if name == "auto":
        from numba import cuda

        return "cuda" if cuda.is_available() else "numba"
    if name not in BACKEND_MODULES:
        valid = ", ".join(repr(n) for n in ["auto", *BACKEND_MODULES])
        raise InputError(f"unknown backend {name!r}; valid backends are {valid}")
    return name


def cone_projection_solver(name: str = "auto"):
    """The ``solve_cone_projections`` function of a backend (see the module docstring).

    Parameters
    ----------
    name : str
        A backend name accepted by :func:`select_backend`.

    Returns
    -------
    callable
        ``solve_cone_projections(points, t_vecs, kappa) -> list of arrays``.
    """
    module = importlib.import_module(f"{__name__}.{BACKEND_MODULES[select_backend(name)]}")
    return module.solve_cone_projections
