import json

import numpy as np
import pytest

from mftma.errors import InputError
from mftma.pipeline.verdicts import (
    claims_over_seeds,
    combine_verdicts,
    interval_verdict,
    summarize_statistic,
    t_interval,
)


def test_t_interval_matches_the_hand_computed_one():
    # mean 2, s = 1, n = 3: half width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    assert t_interval([1.0, 2.0, 3.0]) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    # n = 2: t(0.975, 1) = 12.706205, s = sqrt(2) / 2 * |a - b| ... for (0, 1): s = 0.707107, half = 6.353102
    assert t_interval([0.0, 1.0]) == pytest.approx((0.5 - 6.353102, 0.5 + 6.353102), abs=1e-6)
    assert t_interval([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3))
    assert t_interval([0.3]) is None
    with pytest.raises(InputError, match="non-finite"):
        t_interval([0.1, float("nan")])


def test_t_interval_covers_the_true_mean_95_percent_of_the_time():
    samples = np.random.default_rng(0).normal(0.1, 1.0, size=(4000, 3))
    covered = [low <= 0.1 <= high for low, high in map(t_interval, samples)]
    assert np.mean(covered) == pytest.approx(0.95, abs=0.012)  # a normal quantile would give about 0.83


@pytest.mark.parametrize("interval, verdict", [
    ((0.01, 0.5), "held"), ((-0.5, -0.01), "not held"), ((-0.1, 0.2), "undecided"),
    ((0.0, 0.2), "undecided"), (None, "undecided"),
])
def test_interval_verdict(interval, verdict):
    assert interval_verdict(interval) == verdict


@pytest.mark.parametrize("per_seed, verdict", [
    ([0.20, 0.25, 0.30], "held"),          # interval 0.25 ± 0.124
    ([-0.20, -0.25, -0.30], "not held"),
    ([0.5, -0.4, 0.1], "undecided"),       # mean 0.067, interval about ± 1.1
    ([0.5, None, None], "undecided"),      # one defined value: no interval
])
def test_statistic_summary_on_known_statistics(per_seed, verdict):
    summary = summarize_statistic(per_seed)
    defined = [value for value in per_seed if value is not None]
    assert summary["per_seed"] == per_seed and summary["n"] == len(defined)
    assert summary["mean"] == pytest.approx(np.mean(defined), abs=1e-6)
    assert summary["verdict"] == verdict
    if len(defined) < 2:
        assert summary["interval"] is None
    else:
        low, high = summary["interval"]
        assert low < summary["mean"] < high


def test_a_claim_holds_when_all_its_conditions_do():
    assert combine_verdicts(["held", "held"]) == "held"
    assert combine_verdicts(["held", "undecided"]) == "undecided"
    assert combine_verdicts(["undecided", "not held", "held"]) == "not held"


def claim(statistics, held=None, not_evaluable=None):
    held = all(value is not None and value >= 0 for value in statistics.values()) if held is None else held
    evidence = {} if not_evaluable is None else {"not_evaluable": not_evaluable}
    return {"claim": "c", "test": "not evaluable" if not_evaluable else "t", "held": held,
            "statistics": statistics, "evidence": evidence}


def test_claims_over_seeds_on_synthetic_runs_with_known_verdicts():
    margins = {"a": [0.20, 0.25, 0.30], "b": [0.5, -0.4, 0.1], "c": [-0.20, -0.25, -0.30]}
    runs = [{"a": claim({"flat_margin": margins["a"][seed]}),
             "b": claim({"rise_margin": margins["b"][seed], "early_margin": 0.05 + 0.01 * seed}),
             "c": claim({"test_fall_margin": margins["c"][seed], "restored_fall_margin": 0.1 * (seed + 1)}),
             "d": claim({"loss_margin": None}, False, "no rollback table"),
             "thresholds": {"rise": 0.25}}
            for seed in range(3)]
    summary = claims_over_seeds(runs)
    assert {key: summary[key]["verdict"] for key in "abcd"} == {
        "a": "held", "b": "undecided", "c": "not held", "d": "not evaluable"}
    assert summary["b"]["statistics"]["early_margin"]["verdict"] == "held"
    assert summary["b"]["held_per_seed"] == [True, False, True]
    assert summary["c"]["statistics"]["test_fall_margin"]["per_seed"] == margins["c"]
    assert summary["d"]["not_evaluable"] == ["no rollback table"] * 3 and "not_evaluable" not in summary["a"]
    assert summary["thresholds"] == {"rise": 0.25} and "Student t" in summary["interval"]
    json.dumps(summary, allow_nan=False)


def test_a_claim_evaluable_in_some_runs_is_summarised_over_those():
    runs = [{"a": claim({"flat_margin": value})} for value in (0.1, 0.12, 0.11)]
    runs.append({"a": claim({"flat_margin": None}, False, "no 'shuffled' rows")})
    summary = claims_over_seeds(runs)["a"]
    assert summary["statistics"]["flat_margin"]["n"] == 3 and summary["verdict"] == "held"
    assert summary["not_evaluable"] == [None, None, None, "no 'shuffled' rows"]
