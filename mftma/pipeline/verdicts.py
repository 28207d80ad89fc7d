"""Verdicts over several runs (seeds): per-seed statistics, their mean, a 95 % interval and a verdict.

A claim's statistics are margins (:mod:`mftma.pipeline.claims`): positive means the condition holds.
Over K runs each margin is summarised by its per-seed values, their mean and the **two-sided 95 %
Student t interval over seeds**, ``mean ± t(0.975, n - 1) · s / sqrt(n)`` (``s`` the sample standard
deviation, ``n`` the number of runs where the margin is defined; docs/method.md §6.3). The verdict is
read off the interval:

* ``held``: the interval lies entirely above 0;
* ``not held``: entirely below 0;
* ``undecided``: it contains 0, or there are fewer than 2 defined values (no interval).

A claim holds when all its conditions hold, so its verdict is ``held`` when every statistic's verdict is
``held``, ``not held`` when any is ``not held``, ``undecided`` otherwise, and ``not evaluable`` when no
run could evaluate it (its per-run reasons are listed).
"""
from __future__ import annotations

import math

import numpy as np

from mftma.errors import InputError

CONFIDENCE = 0.95
INTERVAL = "two-sided 95 % Student t interval over seeds: mean ± t(0.975, n-1) · s / sqrt(n)"
HELD, NOT_HELD, UNDECIDED, NOT_EVALUABLE = "held", "not held", "undecided", "not evaluable"


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Two-sided Student t confidence interval of the mean of ``values`` (None with fewer than 2).

    Examples
    --------
    >>> low, high = t_interval([1.0, 2.0, 3.0])
    >>> round(low, 3), round(high, 3)
    (-0.484, 4.484)
    """
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return None
    if not np.isfinite(values).all():
        raise InputError(f"interval of non-finite values {values.tolist()}")
    half = t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


def interval_verdict(interval: tuple[float, float] | None) -> str:
    """``held`` (entirely above 0), ``not held`` (entirely below 0) or ``undecided`` (contains 0, or None)."""
    if interval is None:
        return UNDECIDED
    low, high = interval
    if low > 0:
        return HELD
    if high < 0:
        return NOT_HELD
    return UNDECIDED


def summarize_statistic(per_seed) -> dict:
    """Per-seed values (None where undefined), ``n`` defined, ``mean``, ``interval`` and ``verdict``."""
    defined = [float(value) for value in per_seed if value is not None and math.isfinite(value)]
    interval = t_interval(defined)
    return {
        "per_seed": [None if value is None or not math.isfinite(value) else _round(value) for value in per_seed],
        "n": len(defined),
        "mean": _round(float(np.mean(defined))) if defined else None,
        "interval": None if interval is None else [_round(bound) for bound in interval],
        "verdict": interval_verdict(interval),
    }


def combine_verdicts(verdicts) -> str:
    """A claim's verdict from its conditions' verdicts (all must hold)."""
    verdicts = list(verdicts)
    if NOT_HELD in verdicts:
        return NOT_HELD
    if verdicts and all(verdict == HELD for verdict in verdicts):
        return HELD
    return UNDECIDED


def claims_over_seeds(per_run: list[dict]) -> dict:
    """Summary of each claim over runs, from the runs' :func:`mftma.pipeline.claims.evaluate_claims`.

    Returns
    -------
    dict
        Per claim key: ``claim``, ``test``, ``verdict``, ``held_per_seed`` (the single-run verdicts),
        ``statistics`` (name -> :func:`summarize_statistic`) and, when some run could not evaluate it,
        ``not_evaluable`` (the reasons, per seed, None where it was evaluable); plus ``thresholds``
        and ``interval`` (how intervals are computed).
    """
    if not per_run:
        raise InputError("no runs to summarise")
    keys = [key for key in per_run[0] if isinstance(per_run[0][key], dict) and "statistics" in per_run[0][key]]
    summary = {key: _claim_over_seeds([claims[key] for claims in per_run]) for key in keys}
    return {**summary, "thresholds": per_run[0].get("thresholds"), "interval": INTERVAL}


def _claim_over_seeds(claims: list[dict]) -> dict:
    names = list(claims[0]["statistics"])
    statistics = {name: summarize_statistic([claim["statistics"][name] for claim in claims]) for name in names}
    reasons = [claim["evidence"].get("not_evaluable") for claim in claims]
    evaluable = [claim for claim, reason in zip(claims, reasons) if reason is None]
    summary = {
        "claim": claims[0]["claim"] if not evaluable else evaluable[0]["claim"],
        "test": "not evaluable" if not evaluable else evaluable[0]["test"],
        "verdict": NOT_EVALUABLE if not evaluable else combine_verdicts(s["verdict"] for s in statistics.values()),
        "held_per_seed": [claim["held"] for claim in claims],
        "statistics": statistics,
    }
    if any(reason is not None for reason in reasons):
        summary["not_evaluable"] = reasons
    return summary


def _round(value: float) -> float:
    return round(value, 6)
