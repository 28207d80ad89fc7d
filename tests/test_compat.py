"""The original MFTMA API: names, import paths, signatures and return tuples."""
import importlib

import numpy as np
import pytest

import mftma
from mftma.errors import InputError


@pytest.mark.parametrize(
    "module, names",
    [
        ("mftma", ["manifold_analysis_corr", "each_manifold_analysis_D1", "alldata_dimension_analysis"]),
        ("mftma.manifold_analysis_correlation", ["manifold_analysis_corr", "each_manifold_analysis_D1"]),
        ("mftma.alldata_dimension_analysis", ["alldata_dimension_analysis"]),
    ],
)
def test_import_paths(module, names):
    for name in names:
        assert callable(getattr(importlib.import_module(module), name))


def test_import_mftma_stays_light():
    import subprocess
    import sys

    code = "import sys, mftma; print('torch' in sys.modules, 'numba' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == [
        "False", "False"
    ]


def test_alldata_module_and_function_agree(rng):
    import mftma.alldata_dimension_analysis as module

    manifolds = [rng.standard_normal((12, 6)) for _ in range(3)]
    assert module(manifolds) == mftma.alldata_dimension_analysis(manifolds) == module.alldata_dimension_analysis(
        manifolds
    )


def test_manifold_analysis_corr_returns_reference_tuple(rng):
    manifolds = [rng.standard_normal((30, 8)) for _ in range(5)]
    a, R, D, res_coeff0, KK = mftma.manifold_analysis_corr(manifolds, 0.0, 40, n_reps=2, seed=0)
    assert a.shape == R.shape == D.shape == (5,)
    assert isinstance(res_coeff0, float) and isinstance(KK, int)
    again = mftma.manifold_analysis_corr(manifolds, 0.0, 40, None, 2, seed=0)
    np.testing.assert_array_equal(a, again[0])


def test_each_manifold_analysis_matches_golden_single_case(golden):
    arrays, meta = golden
    for index in (0, 5):
        info = meta["single"][index]
        a, R, D = mftma.each_manifold_analysis_D1(
            arrays[f"single{index}_sD1"], info["kappa"], info["n_t"], t_vec=arrays[f"single{index}_t_vec"]
        )
        assert (a, R, D) == pytest.approx((info["capacity"], info["radius_M"], info["dimension_M"]), rel=1e-6)


def test_each_manifold_analysis_seeded_and_checked(rng):
    points = np.vstack([rng.standard_normal((4, 9)), np.ones((1, 9))])
    assert mftma.each_manifold_analysis_D1(points, 0, 50, seed=1) == mftma.each_manifold_analysis_D1(
        points, 0, 50, seed=1
    )
    with pytest.raises(InputError, match="eps"):
        mftma.each_manifold_analysis_D1(points, 0, 50, eps=1e-6)
    with pytest.raises(InputError, match="t_vecs"):
        mftma.each_manifold_analysis_D1(points, 0, 50, t_vec=np.zeros((4, 50)))
