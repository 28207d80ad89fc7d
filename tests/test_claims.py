import itertools
import json

import pandas as pd
import pytest

from mftma.errors import InputError
from mftma.pipeline.claims import (
    STATISTICS,
    ClaimThresholds,
    evaluate_claims,
    generalization_falls_in_final_layers,
    late_memorization_in_final_layers,
    layer_groups,
    permuted_unstructured_at_best,
    rollback_recovers_test_accuracy,
)

LAYERS = ["input", "conv1", "conv2", "conv3", "fc", "logits"]  # early: conv1, conv2; final: fc, logits
BEST, LAST = 5, 20


SUBSETS = ("unpermuted", "permuted", "restored", "shuffled", "test")


def paper_like_capacity(subset, epoch, layer_index):
    """Capacities shaped like ICLR 2021 Fig. 3: memorization late and only in the final layers; the
    shuffled null baseline is 0.04 everywhere."""
    final = layer_index >= 4
    if subset == "shuffled":
        return 0.04
    if subset == "permuted":
        return 0.10 if (final and epoch == LAST) else 0.04
    if subset == "unpermuted":
        return 0.04 + 0.01 * layer_index + (0.03 if final and epoch == LAST else 0.0)
    return 0.04 + 0.005 * layer_index - (0.02 if final and epoch == LAST else 0.0)  # restored, test


def results_table(capacity=paper_like_capacity):
    rows = [
        dict(run="r", epoch=epoch, layer=layer, layer_index=index, subset=subset, metric="capacity",
             value=capacity(subset, epoch, index))
        for epoch, (index, layer), subset in itertools.product(
            (0, BEST, LAST), enumerate(LAYERS), SUBSETS)
    ]
    return pd.DataFrame(rows)


def check_margins(claim):
    """The statistics are margins: the claim held exactly when every one is positive (or zero)."""
    margins = claim["statistics"].values()
    assert claim["held"] == all(margin is not None and margin >= 0 for margin in margins)


def rollback_table(test_accuracy):
    """Rollback table with test accuracy ``test_accuracy(direction, k, epoch)`` on 5 blocks."""
    rows = [
        dict(run="r", final_epoch=LAST, direction=direction, k=k, epoch=epoch, subset="test", metric="accuracy",
             value=test_accuracy(direction, k, epoch))
        for direction, k, epoch in itertools.product(("last", "first"), range(6), (0, BEST))
    ]
    return pd.DataFrame(rows)


def recovering(direction, k, epoch):
    if k == 0:
        return 0.60
    if epoch == BEST and (direction == "last" or k == 5):
        return 0.70 if k == 5 else 0.66 + 0.01 * k
    return 0.61


def test_layer_groups_split_blocks_into_thirds():
    assert layer_groups(LAYERS) == (["conv1", "conv2"], ["fc", "logits"])
    assert layer_groups(["input", "fc1", "fc2", "logits"]) == (["fc1"], ["logits"])
    with pytest.raises(InputError, match="at least two"):
        layer_groups(["input", "logits"])


def test_all_claims_hold_on_a_paper_like_run():
    claims = evaluate_claims(results_table(), rollback_table(recovering), BEST, LAST)
    assert {key: claims[key]["held"] for key in "abcd"} == dict.fromkeys("abcd", True)
    for key in "abcd":
        assert tuple(claims[key]["statistics"]) == STATISTICS[key]
        check_margins(claims[key])
    assert claims["a"]["statistics"]["flat_margin"] == pytest.approx(0.25)
    assert claims["b"]["statistics"] == pytest.approx({"rise_margin": 1.25, "early_margin": 0.10})
    assert claims["d"]["statistics"] == pytest.approx(
        {"loss_margin": 0.09, "recovered_margin": 0.3, "last_over_first_margin": 0.07})
    assert claims["d"]["evidence"]["test_accuracy_lost"] == pytest.approx(0.10)
    assert claims["d"]["evidence"]["gain_last_k"] == pytest.approx(0.08)
    assert claims["d"]["evidence"]["k_last"] == 2
    assert claims["b"]["evidence"]["final_mean_relative_rise"] == pytest.approx(1.5)
    json.dumps(claims, allow_nan=False)  # the summary must be strict JSON


def test_claim_a_fails_when_permuted_structure_exists_at_best():
    def early_memorization(subset, epoch, index):
        if subset == "permuted" and index == 5:
            return 0.08
        return paper_like_capacity(subset, epoch, index)

    claim = permuted_unstructured_at_best(results_table(early_memorization), BEST)
    assert not claim["held"]
    assert claim["evidence"]["max_relative_deviation_from_shuffled"] == pytest.approx(1.0)
    assert claim["statistics"]["flat_margin"] == pytest.approx(0.25 - 1.0)
    check_margins(claim)


def test_claim_a_compares_each_layer_with_its_shuffled_baseline():
    """A narrow layer where any grouping has a high capacity (both 0.14) shows no structure; permuted
    capacity away from a layer's shuffled baseline is a deviation, whatever the input's value."""
    def narrow_logits(subset, epoch, index):
        if subset in ("permuted", "shuffled") and index == 5:
            return 0.14
        return paper_like_capacity(subset, epoch, index)

    assert permuted_unstructured_at_best(results_table(narrow_logits), BEST)["held"]

    def shuffled_higher_in_logits(subset, epoch, index):
        return 0.14 if (subset, index) == ("shuffled", 5) else paper_like_capacity(subset, epoch, index)

    claim = permuted_unstructured_at_best(results_table(shuffled_higher_in_logits), BEST)
    assert not claim["held"]
    assert claim["evidence"]["permuted_over_shuffled"]["logits"] == pytest.approx(0.04 / 0.14)


def test_claim_b_fails_when_early_layers_memorize_too():
    def everywhere(subset, epoch, index):
        if subset == "permuted" and epoch == LAST and index > 0:
            return 0.10
        return paper_like_capacity(subset, epoch, index)

    claim = late_memorization_in_final_layers(results_table(everywhere), BEST, LAST)
    assert not claim["held"]
    assert claim["evidence"]["early_max_relative_change"] == pytest.approx(1.5)
    assert claim["statistics"]["early_margin"] == pytest.approx(0.10 - 1.5)
    check_margins(claim)


def test_claim_b_measures_the_rise_above_the_shuffled_baseline():
    def baseline_rises_too(subset, epoch, index):
        if subset == "shuffled" and epoch == LAST and index >= 4:
            return 0.10
        return paper_like_capacity(subset, epoch, index)

    claim = late_memorization_in_final_layers(results_table(baseline_rises_too), BEST, LAST)
    assert not claim["held"]
    assert claim["evidence"]["final_mean_relative_rise"] == pytest.approx(0.0)
    assert claim["statistics"]["rise_margin"] == pytest.approx(-0.25)


def test_claim_b_fails_without_a_large_enough_rise():
    def small_rise(subset, epoch, index):
        if subset == "permuted" and epoch == LAST and index >= 4:
            return 0.045
        return paper_like_capacity(subset, epoch, index)

    assert not late_memorization_in_final_layers(results_table(small_rise), BEST, LAST)["held"]
    assert late_memorization_in_final_layers(results_table(small_rise), BEST, LAST,
                                             ClaimThresholds(rise=0.1))["held"]


def test_claim_c_fails_when_test_capacity_rises():
    def test_rises(subset, epoch, index):
        if subset == "test" and epoch == LAST and index >= 4:
            return 0.2
        return paper_like_capacity(subset, epoch, index)

    claim = generalization_falls_in_final_layers(results_table(test_rises), BEST, LAST)
    assert not claim["held"]
    check_margins(claim)
    assert claim["statistics"]["test_fall_margin"] < 0 < claim["statistics"]["restored_fall_margin"]
    assert claim["evidence"]["test_mean_relative_change"] > 0
    assert claim["evidence"]["restored_mean_relative_change"] < 0


def test_claim_d_fails_when_first_layers_recover_more():
    def first_better(direction, k, epoch):
        return recovering("last", k, epoch) + (0.02 if direction == "first" and 0 < k < 5 else 0.0)

    claim = rollback_recovers_test_accuracy(rollback_table(first_better), BEST)
    assert not claim["held"]
    check_margins(claim)
    assert claim["statistics"]["last_over_first_margin"] < 0
    assert claim["evidence"]["gain_first_k"] > claim["evidence"]["gain_last_k"]


def test_claim_d_fails_when_no_accuracy_was_lost():
    claim = rollback_recovers_test_accuracy(rollback_table(lambda d, k, e: 0.7), BEST)
    assert not claim["held"]
    assert claim["evidence"]["recovered_fraction"] is None
    assert claim["statistics"]["loss_margin"] == pytest.approx(-0.01)
    assert claim["statistics"]["recovered_margin"] is None


def test_claims_without_late_change_do_not_hold():
    claims = evaluate_claims(results_table(), rollback_table(recovering), LAST, LAST)
    assert [claims[key]["held"] for key in "bcd"] == [False, False, False]
    assert claims["d"]["evidence"]["test_accuracy_lost"] == 0


def test_missing_epoch_is_a_clear_error():
    with pytest.raises(InputError, match="epoch 7 was not analysed"):
        permuted_unstructured_at_best(results_table(), 7)


def test_claims_without_their_numbers_do_not_hold_and_say_why():
    results = results_table()
    claims = evaluate_claims(results[results["subset"] != "permuted"], rollback_table(recovering), BEST, LAST)
    for key in "ab":
        assert not claims[key]["held"]
        assert "no values for subset 'permuted'" in claims[key]["evidence"]["not_evaluable"]
        assert claims[key]["statistics"] == dict.fromkeys(STATISTICS[key])
    assert claims["a"]["claim"].startswith("permuted manifolds look like unstructured clouds")
    assert claims["c"]["held"] and claims["d"]["held"]
    json.dumps(claims, allow_nan=False)


def test_claims_without_the_shuffled_baseline_say_what_to_run():
    results = results_table()
    claims = evaluate_claims(results[results["subset"] != "shuffled"], rollback_table(recovering), BEST, LAST)
    for key in "ab":
        assert not claims[key]["held"] and claims[key]["test"] == "not evaluable"
        reason = claims[key]["evidence"]["not_evaluable"]
        assert "no 'shuffled' rows" in reason and "mftma cache RUN_DIR" in reason and "mftma analyze" in reason
    assert claims["c"]["held"] and claims["d"]["held"]
