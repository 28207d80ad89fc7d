"""The four claims of the memorization study (docs/method.md §6.2) as measurable comparisons.

Each claim function returns ``{"claim", "test", "held", "statistics", "evidence"}``: the claim in words,
the comparison with its thresholds, whether it held on this run, its **statistics** and the numbers it
was decided on. The statistics are margins, each the quantity compared with one threshold minus (or
plus) that threshold: **positive means that condition holds**; the claim holds when all its conditions
hold. Over several runs (seeds) the margins are summarised with intervals by
:mod:`mftma.pipeline.verdicts`. Thresholds are the fields of :class:`ClaimThresholds`; changes are
relative, ``value / reference - 1``.

Layers: the analysed layers other than ``input`` are split into the **early** group (the first
``ceil(L / 3)`` of the L blocks) and the **final** group (the last ``ceil(L / 3)``). "Best" is the
epoch of best test accuracy, "last" the final epoch. Claims (a) and (b) compare the ``permuted``
grouping with the ``shuffled`` one (the same examples grouped by a random labelling training never saw:
what an unstructured cloud of these points gives at that layer, docs/method.md §1.2); without
``shuffled`` rows they are not evaluable.

(a) ``permuted_unstructured_at_best``: at the best epoch, at every analysed layer (the input included),
    ``|capacity_permuted / capacity_shuffled - 1| <= flat_tolerance``.
    Statistic ``flat_margin = flat_tolerance - max over layers |ratio - 1|``.
(b) ``late_memorization_in_final_layers``: with ``ratio = capacity_permuted / capacity_shuffled`` per
    layer and epoch, from best to last epoch the ratio of the final group rises by at least ``rise``
    (mean over its layers of ``ratio(last) / ratio(best) - 1``) while no early layer's ratio changes by
    more than ``early_change``. Statistics ``rise_margin = mean final rise - rise`` and
    ``early_margin = early_change - max early |change|``.
(c) ``generalization_falls_in_final_layers``: from best to last epoch, in the final group (mean
    relative change), restored and test capacity fall by at least ``change`` and unpermuted
    capacity rises by at least ``change``. Statistics ``restored_fall_margin = -change_restored - change``,
    ``test_fall_margin`` likewise and ``unpermuted_rise_margin = change_unpermuted - change``.
(d) ``rollback_recovers_test_accuracy``: the test accuracy lost from best to last epoch is at least
    ``min_loss``; rolling back the last k <= ceil(L / 3) blocks to the best epoch recovers at least
    ``recovered_fraction`` of it, and more than rolling back the first k <= ceil(L / 3) blocks.
    Statistics ``loss_margin = lost - min_loss``, ``recovered_margin = gain_last / lost -
    recovered_fraction`` (undefined when nothing was lost) and ``last_over_first_margin = gain_last -
    gain_first`` (must be > 0).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from mftma.errors import InputError
from mftma.results.selections import check_results, layer_order, layer_profile


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


def _by_layer(values: pd.Series) -> dict:
    return {layer: _number(value) for layer, value in values.items()}


def _profiles(results, subset, epochs) -> list[pd.Series]:
    return [layer_profile(results, "capacity", subset, epoch) for epoch in epochs]


def _relative(series_new: pd.Series, series_old: pd.Series) -> pd.Series:
    return series_new / series_old - 1.0


def _verdict(claim: str, test: str, held, statistics: dict, evidence: dict) -> dict:
    return {"claim": claim, "test": test, "held": bool(held),
            "statistics": {name: _number(value) for name, value in statistics.items()}, "evidence": evidence}


#: Names of each claim's statistics (margins; positive = that condition holds), keyed by claim.
STATISTICS = {
    "a": ("flat_margin",),
    "b": ("rise_margin", "early_margin"),
    "c": ("restored_fall_margin", "test_fall_margin", "unpermuted_rise_margin"),
    "d": ("loss_margin", "recovered_margin", "last_over_first_margin"),
}


def null_ratio(results, epoch: int) -> pd.Series:
    """``capacity_permuted / capacity_shuffled`` per layer at ``epoch`` (docs/method.md §6.2).

    Raises
    ------
    InputError
        The table has no ``shuffled`` rows (the null baseline), naming what to run, or lacks the epoch.
    """
    if not (results["subset"] == "shuffled").any():
        raise InputError(
            "the results table has no 'shuffled' rows, the null baseline that claims (a) and (b) compare the "
            "permuted manifolds with; cache the shuffled grouping (`mftma cache RUN_DIR`, with --rebuild for a "
            "cache written before it existed) and analyse it (`mftma analyze RUN_DIR`), or rerun `mftma quickstart`"
        )
    permuted, shuffled = (layer_profile(results, "capacity", subset, epoch) for subset in ("permuted", "shuffled"))
    return permuted / shuffled


def permuted_unstructured_at_best(results, best_epoch: int, thresholds=ClaimThresholds()) -> dict:
    """Claim (a): permuted manifolds look like unstructured clouds at every layer at the best epoch."""
    results = check_results(results)
    ratio = null_ratio(results, best_epoch)
    deviation = (ratio - 1.0).abs()
    largest = deviation.max() if deviation.notna().all() else float("nan")
    evidence = {
        "best_epoch": int(best_epoch),
        "permuted_capacity": _by_layer(layer_profile(results, "capacity", "permuted", best_epoch)),
        "shuffled_capacity": _by_layer(layer_profile(results, "capacity", "shuffled", best_epoch)),
        "permuted_over_shuffled": _by_layer(ratio),
        "max_relative_deviation_from_shuffled": _number(largest),
        "flat_tolerance": thresholds.flat_tolerance,
    }
    return _verdict(
        "At the best epoch permuted manifolds look like unstructured clouds at every layer.",
        f"|capacity_permuted(layer) / capacity_shuffled(layer) - 1| <= {thresholds.flat_tolerance} at every "
        "layer at the best epoch",
        largest <= thresholds.flat_tolerance,
        {"flat_margin": thresholds.flat_tolerance - largest},
        evidence,
    )


def late_memorization_in_final_layers(results, best_epoch: int, last_epoch: int, thresholds=ClaimThresholds()) -> dict:
    """Claim (b): late in training the final layers' permuted capacity rises relative to the shuffled baseline."""
    results = check_results(results)
    early, final = layer_groups(layer_order(results))
    best, last = (null_ratio(results, epoch) for epoch in (best_epoch, last_epoch))
    change = _relative(last, best)
    final_rise, early_change = change[final].mean(), change[early].abs().max()
    evidence = {
        "best_epoch": int(best_epoch), "last_epoch": int(last_epoch),
        "early_layers": early, "final_layers": final,
        "permuted_over_shuffled_best": _by_layer(best[early + final]),
        "permuted_over_shuffled_last": _by_layer(last[early + final]),
        "final_mean_relative_rise": _number(final_rise),
        "early_max_relative_change": _number(early_change),
        "rise": thresholds.rise, "early_change": thresholds.early_change,
    }
    return _verdict(
        "Late in training the final layers' permuted capacity rises well above the shuffled baseline, "
        "relative to the best epoch, while the early layers barely change.",
        f"with ratio = capacity_permuted / capacity_shuffled: mean over final layers of ratio(last) / ratio(best) "
        f"- 1 >= {thresholds.rise} and |ratio(last) / ratio(best) - 1| <= {thresholds.early_change} "
        "at every early layer",
        final_rise >= thresholds.rise and early_change <= thresholds.early_change,
        {"rise_margin": final_rise - thresholds.rise, "early_margin": thresholds.early_change - early_change},
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
        {"restored_fall_margin": -changes["restored"] - thresholds.change,
         "test_fall_margin": -changes["test"] - thresholds.change,
         "unpermuted_rise_margin": changes["unpermuted"] - thresholds.change},
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
        {"loss_margin": lost - thresholds.min_loss, "recovered_margin": recovered - thresholds.recovered_fraction,
         "last_over_first_margin": gain_last - gain_first},
        evidence,
    )


def evaluate_claims(results, rollback: pd.DataFrame, best_epoch: int, last_epoch: int,
                    thresholds=ClaimThresholds()) -> dict:
    """All four claims, keyed ``a``..``d``, plus the thresholds used.

    A claim whose numbers are missing from the tables (e.g. a run without permuted examples, or a
    table without the ``shuffled`` baseline for claims (a) and (b)) does not hold; its statistics are
    None and its evidence says why (``not_evaluable``).

    Parameters
    ----------
    results : pandas.DataFrame
        Results table of one run (see :mod:`mftma.results.table`).
    rollback : pandas.DataFrame
        Rollback table of the run (see :mod:`mftma.pipeline.rollback`).
    best_epoch, last_epoch : int
        The epoch of best test accuracy and the final epoch; both must be analysed. When they
        coincide, claims (b)-(d) do not hold (nothing changed after the best epoch).
    thresholds : ClaimThresholds

    Returns
    -------
    dict
        ``{"a": {...}, "b": {...}, "c": {...}, "d": {...}, "thresholds": {...}, "settings": {...}}``;
        ``settings`` names the analysis settings the claims were decided on (``key`` and the values of
        :func:`mftma.results.table.settings_summary`).

    Raises
    ------
    InputError
        The results table mixes several analysis settings (select one with
        :func:`mftma.results.table.select_settings`).
    """
    from mftma.results.table import settings_summary, single_settings, validate_results

    results = validate_results(results)
    key = single_settings(results)
    claims = {
        "a": (permuted_unstructured_at_best, results, best_epoch),
        "b": (late_memorization_in_final_layers, results, best_epoch, last_epoch),
        "c": (generalization_falls_in_final_layers, results, best_epoch, last_epoch),
        "d": (rollback_recovers_test_accuracy, rollback, best_epoch),
    }
    return {**{name: _evaluated(name, function, *args, thresholds) for name, (function, *args) in claims.items()},
            "thresholds": asdict(thresholds),
            "settings": {"key": key, **settings_summary(results.attrs.get("settings", {}).get(key))}}


def _evaluated(key: str, claim, *args) -> dict:
    """``claim(*args)``, or a verdict that it does not hold when the tables lack its numbers."""
    try:
        return claim(*args)
    except InputError as error:
        statement = claim.__doc__.split(": ", 1)[1].split("\n")[0]
        return _verdict(statement, "not evaluable", False, dict.fromkeys(STATISTICS[key], float("nan")),
                        {"not_evaluable": str(error)})
