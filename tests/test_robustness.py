"""Edge cases the original code broke on, clear errors for bad input, and memory proportional to the data."""
import tracemalloc

import numpy as np
import pytest

from mftma import analyze_manifolds, data_dimension
from mftma.errors import InputError


def _run(manifolds, **kwargs):
    kwargs = {"n_t": 30, "n_reps": 2, "seed": 0, **kwargs}
    return analyze_manifolds(manifolds, **kwargs)


def _assert_finite(result, count):
    for values in (result.capacity, result.radius, result.dimension):
        assert values.shape == (count,) and np.isfinite(values).all()


@pytest.mark.parametrize("count", [2, 3, 10])
def test_small_numbers_of_manifolds(rng, count):
    result = _run([rng.standard_normal((20, 6)) for _ in range(count)])
    _assert_finite(result, count)
    assert 0 <= result.K <= max(count - 2, 0)


def test_more_samples_than_features(rng):
    result = _run([rng.standard_normal((5, 12)) for _ in range(4)], t_vecs=[rng.standard_normal((6, 30))] * 4)
    _assert_finite(result, 4)


def test_float32_is_computed_in_float64(rng):
    manifolds = rng.standard_normal((4, 20, 6))
    as_64 = _run(manifolds)
    as_32 = _run(manifolds.astype(np.float32))
    _assert_finite(as_32, 4)
    np.testing.assert_allclose(as_32.capacity, as_64.capacity, rtol=1e-4)


def test_mixed_numbers_of_samples(rng):
    manifolds = [rng.standard_normal((25, m)) for m in (4, 9, 30)]
    result = _run(manifolds, t_vecs=[rng.standard_normal((d, 30)) for d in (5, 10, 26)])
    _assert_finite(result, 3)
    assert data_dimension(manifolds)[2] == 25


def test_duplicated_points(rng):
    base = rng.standard_normal((4, 15, 5))
    manifolds = np.concatenate([base, base[:, :, :2]], axis=2)
    _assert_finite(_run(manifolds), 4)


@pytest.mark.parametrize(
    "manifolds, message",
    [
        ([np.zeros((5, 4))], "at least 2 manifolds"),
        ([np.ones((5, 1)), np.ones((5, 3))], "at least 2"),
        ([np.ones((5, 3)), np.ones((6, 3))], "same N"),
        ([np.ones((5, 3)), np.full((5, 3), np.nan)], "NaN or infinite"),
        ([np.ones((5, 3)), np.full((5, 3), np.inf)], "NaN or infinite"),
        ([np.ones((5, 3)), np.ones((5, 3)), np.where(np.eye(5, 3), np.nan, 1.0)], "manifold 2 contains NaN"),
        ([np.ones((5, 3)), np.full((5, 3), 1e308)], "manifold 1 has values too large"),
        ([np.ones((5, 3)), np.ones(5)], "2-D"),
        (np.ones((5, 3)), "3-D"),
        ([np.ones((5, 3)), np.array([["a"] * 3] * 5)], "real numbers"),
        ("manifolds", "list of"),
    ],
)
def test_bad_manifolds_raise_input_error(manifolds, message):
    with pytest.raises(InputError, match=message):
        analyze_manifolds(manifolds)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kappa": -0.1}, "kappa"),
        ({"kappa": np.nan}, "kappa"),
        ({"n_t": 0}, "n_t"),
        ({"n_reps": 0}, "n_reps"),
        ({"backend": "fortran"}, "fortran"),
        ({"t_vecs": [np.zeros((6, 30))]}, "2 arrays"),
        ({"t_vecs": [np.zeros((5, 30))] * 2}, r"\(6, 30\)"),
        ({"t_vecs": [np.zeros((6, 29))] * 2}, r"\(6, 30\)"),
    ],
)
def test_bad_arguments_raise_input_error(rng, kwargs, message):
    manifolds = [rng.standard_normal((10, 5)) for _ in range(2)]
    with pytest.raises(InputError, match=message):
        _run(manifolds, **kwargs)


def test_center_at_the_mean_of_centers_is_an_input_error(rng):
    manifold = rng.standard_normal((10, 5))
    with pytest.raises(InputError, match="manifold 0: its center equals the mean"):
        _run([manifold, manifold.copy()])


def test_memory_stays_proportional_to_the_data(rng):
    """At N = 20000 anything N x N would take 3.2 GB; the data itself is 2.4 MB."""
    manifolds = [rng.standard_normal((20000, 5)) for _ in range(3)]
    tracemalloc.start()
    _run(manifolds)
    data_dimension(manifolds)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 40e6
