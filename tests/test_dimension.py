"""Total data dimension: participation ratio and explained-variance dimension."""
import numpy as np
import pytest

from mftma.errors import InputError
from mftma.estimator.dimension import data_dimension, squared_singular_values


def test_squared_singular_values_match_svd(rng):
    for shape in [(30, 8), (8, 30)]:
        matrix = rng.standard_normal(shape)
        np.testing.assert_allclose(
            squared_singular_values(matrix), np.linalg.svd(matrix, compute_uv=False) ** 2, rtol=1e-10
        )


def test_isotropic_data_has_full_participation(rng):
    manifolds = [rng.standard_normal((10, 2000)) for _ in range(2)]
    participation, explained, features = data_dimension(manifolds)
    assert features == 10
    assert 7.5 < participation < 9.0  # 9 of 10 spectrum values are kept, all about equal
    assert explained in (8, 9)


def test_low_rank_data(rng):
    basis = rng.standard_normal((40, 3))
    manifolds = [basis @ rng.standard_normal((3, 50)) for _ in range(3)]
    participation, explained, _ = data_dimension(manifolds, perc=0.999)
    assert participation <= 3.0
    assert explained <= 3


def test_rejects_bad_perc_and_constant_data(rng):
    with pytest.raises(InputError, match="perc"):
        data_dimension([rng.standard_normal((5, 4))] * 2, perc=1.5)
    with pytest.raises(InputError, match="variance"):
        data_dimension([np.ones((5, 4)), np.ones((5, 4))])
