"""Capacity, radius and dimension of the 24 golden single-manifold cases of the reference implementation,
within 1e-6 relative (the cuda backend's golden cases run in tests/test_anchor_backends.py)."""
import numpy as np
import pytest

from mftma.estimator.anchor import each_manifold_geometry

#: The cvxpy path is slow: one case of each kind and size class, and the most degenerate one (22).
CVXPY_CASES = [0, 2, 3, 9, 16, 22]


def assert_matches_golden(golden, case, backend):
    arrays, meta = golden
    info = meta["single"][case]
    key = info["key"]
    got = each_manifold_geometry(arrays[f"{key}_sD1"], arrays[f"{key}_t_vec"], info["kappa"], backend)
    expected = (info["capacity"], info["radius_M"], info["dimension_M"])
    np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=f"{key} ({info['kind']}) on {backend}")


@pytest.mark.parametrize("case", range(24))
def test_numba_matches_golden(golden, case):
    assert_matches_golden(golden, case, "numba")


@pytest.mark.parametrize("case", CVXPY_CASES)
def test_cvxpy_matches_golden(golden, case):
    assert_matches_golden(golden, case, "cvxpy")
