"""The four claims of the memorization study (docs/method.md §6.2) as measurable comparisons.

Each claim function returns ``{"claim", "test", "held", "evidence"}``: the claim in words, the
comparison with its thresholds, whether it held, and the numbers it was decided on. Thresholds are
the fields of :class:`ClaimThresholds`; changes are relative, ``value / reference - 1``.

Layers: the analysed layers other than ``input`` are split into the **early** group (the first
``ceil(L / 3)`` of the L blocks) and the **final** group (the last ``ceil(L / 3)``). "Best" is the
epoch of best test accuracy, "last" the final epoch.

(a) ``permuted_unstructured_at_best``: at the best epoch the permuted capacity of every layer
    is within ``flat_tolerance`` of its value at the input.
(b) ``late_memorization_in_final_layers``: from best to last epoch the permuted capacity of the
    final group rises by at least ``rise`` (mean relative change) while no early layer changes by
    more than ``early_change``.
(c) ``generalization_falls_in_final_layers``: from best to last epoch, in the final group (mean
    relative change), restored and test capacity fall by at least ``change`` and unpermuted
    capacity rises by at least ``change``.
(d) ``rollback_recovers_test_accuracy``: the test accuracy lost from best to last epoch is at least
    ``min_loss``; rolling back the last k <= ceil(L / 3) blocks to the best epoch recovers at least
    ``recovered_fraction`` of it, and more than rolling back the first k <= ceil(L / 3) blocks.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from mftma.errors import InputError
from mftma.plotting.tables import check_results, layer_order, layer_profile


@dataclass(frozen=True)
class ClaimThresholds:
    """Thresholds of the claims (relative changes and fractions; accuracies in [0, 1])."""

    flat_tolerance: float = 0.25
    rise: float = 0.25
    early_change: float = 0.10
    change: float = 0.05
    recovered_fraction: float = 0.5
    min_loss: float = 0.01


def group_size(n_blocks: int) -> int:
    """Number of blocks in the early and in the final group: ``ceil(n_blocks / 3)``."""
    return math.ceil(n_blocks / 3)


def layer_groups(layers) -> tuple[list[str], list[str]]:
    """(early, final) groups of the analysed layers other than ``input``.

    Examples
    --------
    >>> layer_groups(["input", "conv1", "conv2", "conv3", "fc", "logits"])
    (['conv1', 'conv2'], ['fc', 'logits'])
    """
    blocks = [layer for layer in layers if layer != "input"]
    if len(blocks) < 2:
        raise InputError(f"the claims need at least two analysed layers besides the input, got {blocks}")
    size = group_size(len(blocks))
    return blocks[:size], blocks[-size:]


def _number(value) -> float | None:
    """JSON-friendly float (None for NaN)."""
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def _profiles(results, subset, epochs) -> list[pd.Series]:
    return [layer_profile(results, "capacity", subset, epoch) for epoch in epochs]


def _relative(series_new: pd.Series, series_old: pd.Series) -> pd.Series:
    return series_new / series_old - 1.0


def _verdict(claim: str, test: str, held, evidence: dict) -> dict:
    return {"claim": claim, "test": test, "held": bool(held), "evidence": evidence}


def permuted_unstructured_at_best(results, best_epoch: int, thresholds=ClaimThresholds()) -> dict:
    """Claim (a): permuted manifolds look like unstructured clouds at every layer at the best epoch."""
    profile = layer_profile(check_results(results), "capacity", "permuted", best_epoch)
    deviation = (profile / profile["input"] - 1.0).abs()
    evidence = {
        "best_epoch": int(best_epoch),
        "permuted_capacity": {layer: _number(v) for layer, v in profile.items()},
        "max_relative_deviation_from_input": _number(deviation.max()),
        "flat_tolerance": thresholds.flat_tolerance,
    }
    return _verdict(
        "At the best epoch permuted manifolds look like unstructured clouds at every layer.",
        f"|capacity_permuted(layer) / capacity_permuted(input) - 1| <= {thresholds.flat_tolerance} at every layer",
        deviation.notna().all() and deviation.max() <= thresholds.flat_tolerance,
        evidence,
    )


def late_memorization_in_final_layers(results, best_epoch: int, last_epoch: int, thresholds=ClaimThresholds()) -> dict:
    """Claim (b): late in training the final layers' permuted capacity rises; early layers barely change."""
    results = check_results(results)
    early, final = layer_groups(layer_order(results))
    best, last = _profiles(results, "permuted", (best_epoch, last_epoch))
    change = _relative(last, best)
    final_rise, early_change = change[final].mean(), change[early].abs().max()
    evidence = {
        "best_epoch": int(best_epoch), "last_epoch": int(last_epoch),
        "early_layers": early, "final_layers": final,
        "permuted_capacity_best": {layer: _number(best[layer]) for layer in early + final},
        "permuted_capacity_last": {layer: _number(last[layer]) for layer in early + final},
        "final_mean_relative_rise": _number(final_rise),
        "early_max_relative_change": _number(early_change),
        "rise": thresholds.rise, "early_change": thresholds.early_change,
    }
    return _verdict(
        "Late in training the final layers' permuted capacity rises well above its best-epoch value "
        "while the early layers barely change.",
        f"mean over final layers of capacity_permuted(last) / capacity_permuted(best) - 1 >= {thresholds.rise} "
        f"and |capacity_permuted(last) / capacity_permuted(best) - 1| <= {thresholds.early_change} "
        "at every early layer",
        final_rise >= thresholds.rise and early_change <= thresholds.early_change,
        evidence,
    )


def generalization_falls_in_final_layers(results, best_epoch: int, last_epoch: int,
                                         thresholds=ClaimThresholds()) -> dict:
    """Claim (c): in the final layers restored and test capacity fall while unpermuted capacity rises."""
    results = check_results(results)
    _, final = layer_groups(layer_order(results))
    changes = {}
    for subset in ("unpermuted", "restored", "test"):
        best, last = _profiles(results, subset, (best_epoch, last_epoch))
        changes[subset] = _relative(last, best)[final].mean()
    evidence = {
        "best_epoch": int(best_epoch), "last_epoch": int(last_epoch), "final_layers": final,
        **{f"{subset}_mean_relative_change": _number(value) for subset, value in changes.items()},
        "change": thresholds.change,
    }
    held = (changes["restored"] <= -thresholds.change and changes["test"] <= -thresholds.change
            and changes["unpermuted"] >= thresholds.change)
    return _verdict(
        "In the final layers restored and test capacity fall while unpermuted capacity keeps rising.",
        f"mean over final layers of capacity(last) / capacity(best) - 1 is <= -{thresholds.change} for "
        f"restored and test and >= {thresholds.change} for unpermuted",
        held,
        evidence,
    )


def rollback_test_accuracy(rollback: pd.DataFrame, direction: str, epoch: int) -> pd.Series:
    """Test accuracy after rolling back k blocks (``direction`` end) to ``epoch``, indexed by k = 0..L.

    k = 0 is the final network; rolling back to the final epoch itself changes nothing.
    """
    test = rollback[(rollback["subset"] == "test") & (rollback["metric"] == "accuracy")
                    & (rollback["direction"] == direction)]
    final = test.loc[test["k"] == 0, "value"]
    if final.empty:
        raise InputError(f"rollback table lacks the final network (k = 0) for direction {direction!r}")
    ks = range(int(rollback["k"].max()) + 1)
    if (rollback["final_epoch"] == epoch).all():
        return pd.Series(final.iloc[0], index=ks)
    accuracy = test[test["epoch"] == epoch].groupby("k")["value"].first().reindex(ks)
    accuracy[0] = final.iloc[0]
    if accuracy.isna().any():
        raise InputError(f"rollback table lacks k = {list(accuracy.index[accuracy.isna()])} "
                         f"for direction {direction!r} and epoch {epoch}")
    return accuracy


def _best_gain(accuracy: pd.Series, max_k: int) -> tuple[float, int]:
    gains = accuracy.loc[1:max_k] - accuracy[0]
    return float(gains.max()), int(gains.idxmax())


def rollback_recovers_test_accuracy(rollback: pd.DataFrame, best_epoch: int, thresholds=ClaimThresholds()) -> dict:
    """Claim (d): rolling back the last few layers to the best epoch recovers lost test accuracy."""
    last_k = rollback_test_accuracy(rollback, "last", best_epoch)
    first_k = rollback_test_accuracy(rollback, "first", best_epoch)
    n_blocks = last_k.index[-1]
    few = group_size(n_blocks)
    lost = float(last_k[n_blocks] - last_k[0])
    gain_last, k_last = _best_gain(last_k, few)
    gain_first, k_first = _best_gain(first_k, few)
    recovered = gain_last / lost if lost > 0 else float("nan")
    evidence = {
        "best_epoch": int(best_epoch), "max_k": few,
        "test_accuracy_best": _number(last_k[n_blocks]), "test_accuracy_last": _number(last_k[0]),
        "test_accuracy_lost": _number(lost),
        "gain_last_k": _number(gain_last), "k_last": k_last,
        "gain_first_k": _number(gain_first), "k_first": k_first,
        "recovered_fraction": _number(recovered),
        "min_loss": thresholds.min_loss, "recovered_fraction_threshold": thresholds.recovered_fraction,
    }
    held = (lost >= thresholds.min_loss and recovered >= thresholds.recovered_fraction
            and gain_last > gain_first)
    return _verdict(
        "Rolling back the last few layers to the best epoch recovers a large part of the test accuracy lost "
        "since the best epoch, more than rolling back the first few.",
        f"lost = acc_test(best) - acc_test(last) >= {thresholds.min_loss}; best gain of rolling back the last "
        f"k <= ceil(L/3) blocks >= {thresholds.recovered_fraction} * lost and > best gain of the first k",
        held,
        evidence,
    )


def evaluate_claims(results, rollback: pd.DataFrame, best_epoch: int, last_epoch: int,
                    thresholds=ClaimThresholds()) -> dict:
    """All four claims, keyed ``a``..``d``, plus the thresholds used.

    A claim whose numbers are missing from the tables (e.g. a run without permuted examples) does
    not hold; its evidence says why (``not_evaluable``).

    Parameters
    ----------
    results : pandas.DataFrame
        Results table of one run (see :mod:`mftma.pipeline.results`).
    rollback : pandas.DataFrame
        Rollback table of the run (see :mod:`mftma.pipeline.rollback`).
    best_epoch, last_epoch : int
        The epoch of best test accuracy and the final epoch; both must be analysed. When they
        coincide, claims (b)-(d) do not hold (nothing changed after the best epoch).
    thresholds : ClaimThresholds

    Returns
    -------
    dict
        ``{"a": {...}, "b": {...}, "c": {...}, "d": {...}, "thresholds": {...}}``.
    """
    claims = {
        "a": (permuted_unstructured_at_best, results, best_epoch),
        "b": (late_memorization_in_final_layers, results, best_epoch, last_epoch),
        "c": (generalization_falls_in_final_layers, results, best_epoch, last_epoch),
        "d": (rollback_recovers_test_accuracy, rollback, best_epoch),
    }
    return {**{key: _evaluated(function, *args, thresholds) for key, (function, *args) in claims.items()},
            "thresholds": asdict(thresholds)}


def _evaluated(claim, *args) -> dict:
    """``claim(*args)``, or a verdict that it does not hold when the tables lack its numbers."""
    try:
        return claim(*args)
    except InputError as error:
        statement = claim.__doc__.split(": ", 1)[1].split("\n")[0]
        return _verdict(statement, "not evaluable", False, {"not_evaluable": str(error)})
