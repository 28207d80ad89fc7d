"""Simulated capacity: determinism, exactness of the separability tests, its interval, errors."""
import json

import numpy as np
import pytest

from mftma.errors import InputError
from mftma.estimator.simulated import dichotomies_for_precision, simulated_capacity
from mftma.estimator.synthetic import synthetic_manifolds


@pytest.fixture(scope="module")
def balls():
    return synthetic_manifolds("ball", 8, 40, 4, radius=0.5, dimension=3, seed=1)


@pytest.fixture(scope="module")
def result(balls):
    return simulated_capacity(balls, precision=0.2, seed=3, n_jobs=1)


def test_dichotomies_for_precision_follows_binomial_error():
    assert dichotomies_for_precision(0.05) == 385  # (1.96 * 0.5 / 0.05)^2
    assert dichotomies_for_precision(0.1, confidence=0.99) == 166
    with pytest.raises(InputError, match="precision"):
        dichotomies_for_precision(0.0)


def test_result_is_consistent(result):
    assert result.ci_low <= result.alpha <= result.ci_high
    assert result.alpha == pytest.approx(result.settings["P"] / result.N_c)
    curve = result.curve
    below, above = curve[curve["fraction"] < 0.5], curve[curve["fraction"] >= 0.5]
    assert below["n_features"].max() < result.N_c <= above["n_features"].min()
    assert (curve["fraction_low"] <= curve["fraction"]).all() and (curve["fraction"] <= curve["fraction_high"]).all()
    assert result.timings["n_tests"] == curve["n_dichotomies"].sum()
    json.dumps(result.to_dict())


def test_deterministic_and_independent_of_thread_count(balls, result):
    threaded = simulated_capacity(balls, precision=0.2, seed=3, n_jobs=2)
    assert threaded.alpha == result.alpha
    assert threaded.curve.equals(result.curve)
    other_seed = simulated_capacity(balls, precision=0.2, seed=4, n_jobs=1)
    assert not other_seed.curve.equals(result.curve)


def test_lp_and_hard_margin_svm_decide_every_dichotomy_alike(balls):
    lp = simulated_capacity(balls, n_dichotomies=12, seed=5, n_jobs=1, method="lp")
    svm = simulated_capacity(balls, n_dichotomies=12, seed=5, n_jobs=1, method="svm")
    assert svm.curve.equals(lp.curve)


def test_float32_and_list_input_give_the_same_answer(balls, result):
    as_list = [manifold.astype(np.float32) for manifold in balls]
    assert simulated_capacity(as_list, precision=0.2, seed=3, n_jobs=1).alpha == pytest.approx(result.alpha)


def test_inseparable_data_raise_a_clear_error():
    noise = np.random.default_rng(0).standard_normal((6, 4, 30))
    with pytest.raises(InputError, match="fewer than half of the dichotomies"):
        simulated_capacity(noise, precision=0.2, n_jobs=1)


@pytest.mark.parametrize("arguments, message", [({"method": "svc"}, "method"), ({"n_jobs": 0}, "n_jobs")])
def test_bad_arguments_raise_input_error(balls, arguments, message):
    with pytest.raises(InputError, match=message):
        simulated_capacity(balls, **arguments)
