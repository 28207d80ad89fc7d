"""All anchor-point backends agree to 1e-8 on random and degenerate problems; the numba solution meets
the KKT conditions. The cuda tests run in a subprocess under numba's CUDA simulator, which must be
switched on before numba.cuda is first imported: ``test_cuda_backend_under_simulator`` runs this module
again with ``NUMBA_ENABLE_CUDASIM=1``, where only the ``test_simulator_*`` tests run."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mftma.estimator.anchor import anchor_geometry, each_manifold_geometry
from mftma.estimator.backends import cone_projection_solver, numba_cpu, select_backend

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
in_simulator = pytest.mark.skipif(not SIMULATED, reason="run by test_cuda_backend_under_simulator")
outside_simulator = pytest.mark.skipif(SIMULATED, reason="runs in the main test process")
property_settings = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KINDS = ("cloud", "duplicates", "collinear", "lowrank", "point")


def manifold_points(rng, kind, dim, size, radius):
    """Centered points of one kind, scaled by ``radius``, with the constant last coordinate."""
    if kind == "cloud":
        x = rng.standard_normal((dim, size))
    elif kind == "duplicates":
        distinct = max(1, size // 2)
        x = rng.standard_normal((dim, distinct))[:, np.arange(size) % distinct]
    elif kind == "collinear":
        x = np.outer(rng.standard_normal(dim), rng.standard_normal(size))
    elif kind == "lowrank":
        x = rng.standard_normal((dim, 2)) @ rng.standard_normal((2, size))
    else:
        x = np.zeros((dim, size))
    x = radius * (x - x.mean(axis=1, keepdims=True))
    return np.vstack([x, np.ones((1, size))])


def t_vectors(rng, points, n_t, kappa):
    """Gaussian t vectors; a third moved inside the feasible set, a third with t' inside the points' cone."""
    t = rng.standard_normal((points.shape[0], n_t))
    for i in range(0, n_t, 3):
        t[-1, i] = -np.max(t[:-1, i] @ points[:-1]) - kappa - rng.random() - 0.01
    if np.any(points[:-1]):  # (for a manifold shrunk to a point, t would have no direction to normalise)
        for i in range(1, n_t, 3):
            t[:, i] = points @ rng.random(points.shape[1])
            t[-1, i] -= kappa
    return t


@st.composite
def problems(draw):
    """(points, t_vecs, kappa) of 1-3 manifolds of mixed kinds and sizes."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kappa = draw(st.sampled_from([0.0, 0.1, 0.5, 2.0]))
    points, t_vecs = [], []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(KINDS))
        dim, size = draw(st.integers(1, 6)), draw(st.integers(2, 8))
        s = manifold_points(rng, kind, dim, size, draw(st.sampled_from([0.05, 0.3, 1.0, 3.0])))
        points.append(s)
        t_vecs.append(t_vectors(rng, s, draw(st.integers(1, 9)), kappa))
    return points, t_vecs, kappa


def assert_backends_agree(problem, backend, other):
    """Residuals ``t - v`` to 1e-8 of ``||t'||`` and capacity, radius, dimension to 1e-8 relative."""
    points, t_vecs, kappa = problem
    first = cone_projection_solver(backend)(points, t_vecs, kappa)
    second = cone_projection_solver(other)(points, t_vecs, kappa)
    for a, b, t in zip(first, second, t_vecs):
        scale = np.linalg.norm(t, axis=0) + kappa
        np.testing.assert_array_less(np.linalg.norm(a - b, axis=0), 1e-8 * scale + 1e-12)
    geometry = anchor_geometry(points, t_vecs, kappa, backend)
    for a, b in zip(geometry, anchor_geometry(points, t_vecs, kappa, other)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)


@outside_simulator
@property_settings
@given(problems())
def test_numba_agrees_with_cvxpy(problem):
    assert_backends_agree(problem, "numba", "cvxpy")


@outside_simulator
@property_settings
@given(problems())
def test_numba_solution_satisfies_kkt(problem):
    points, t_vecs, kappa = problem
    packed = numba_cpu.pack_problems(points, t_vecs, kappa)
    alpha, status = numba_cpu.solve_packed(packed)
    assert np.all(status == numba_cpu.CONVERGED)
    first_item = np.searchsorted(packed.item_manifold, packed.item_manifold)
    for item, p in enumerate(packed.item_manifold):
        s, m = points[p], packed.sizes[p]
        start = packed.rhs_offset[item]
        a = alpha[start:start + m]
        gram = packed.gram[packed.gram_offset[p]:packed.gram_offset[p] + m * m].reshape(m, m)
        gradient = packed.rhs[start:start + m] - gram @ a
        tol = 1e-9 * packed.t_norm[item] * np.linalg.norm(s, axis=0)
        v = t_vecs[p][:, item - first_item[item]] - s @ a
        assert np.all(a >= 0)                                   # dual feasibility
        assert np.all(s.T @ v + kappa <= tol)                   # primal feasibility
        assert np.all(gradient <= tol)                          # stationarity of the dual
        assert np.all(np.abs(a * gradient) <= tol * (a + 1e-300) + 1e-15)  # complementary slackness


@outside_simulator
def test_numba_shrunk_manifold_and_repeated_points(rng):
    point = np.vstack([np.zeros((3, 5)), np.ones((1, 5))])
    t_vec = rng.standard_normal((4, 50))
    capacity, radius, dimension = each_manifold_geometry(point, t_vec, backend="numba")
    assert capacity == pytest.approx(1 / np.mean(np.maximum(t_vec[-1], 0) ** 2))
    repeated = manifold_points(rng, "duplicates", 6, 12, 1.0)
    distinct = repeated[:, :6]
    t_vec = rng.standard_normal((7, 40))
    np.testing.assert_allclose(
        each_manifold_geometry(repeated, t_vec, 0.2, "numba"),
        each_manifold_geometry(distinct, t_vec, 0.2, "numba"),
        rtol=1e-10,
    )


@outside_simulator
def test_near_duplicate_points_are_repaired_exactly(rng):
    from scipy.optimize import nnls

    base = rng.standard_normal((8, 6))
    x = base[:, np.arange(12) % 6] + 1e-9 * rng.standard_normal((8, 12))
    points = np.vstack([x - x.mean(axis=1, keepdims=True), np.ones((1, 12))])
    t_vec = rng.standard_normal((9, 40))
    packed = numba_cpu.pack_problems([points], [t_vec], 0.1)
    # The Gram form cannot resolve points 1e-9 apart: some solves fail their KKT check ...
    assert np.any(numba_cpu.solve_packed(packed)[1] != numba_cpu.CONVERGED)
    # ... and are redone exactly.
    residual = numba_cpu.solve_cone_projections([points], [t_vec], 0.1)[0]
    shifted = t_vec + 0.1 * np.eye(9)[-1][:, None]
    for i in range(t_vec.shape[1]):
        expected = points @ nnls(points, shifted[:, i])[0]
        assert np.linalg.norm(residual[:, i] - expected) <= 1e-10 * np.linalg.norm(shifted[:, i])


@outside_simulator
def test_cuda_backend_under_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "skipped" in result.stdout and "passed" in result.stdout


@in_simulator
def test_simulator_auto_selects_cuda():
    assert select_backend("auto") == "cuda"


@in_simulator
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_simulator_cuda_agrees_with_numba(problem):
    assert_backends_agree(problem, "cuda", "numba")


@in_simulator
@pytest.mark.parametrize("case", [0, 1, 14, 22])
def test_simulator_cuda_matches_golden(golden, case):
    arrays, meta = golden
    info = meta["single"][case]
    key = info["key"]
    got = each_manifold_geometry(arrays[f"{key}_sD1"], arrays[f"{key}_t_vec"], info["kappa"], "cuda")
    expected = (info["capacity"], info["radius_M"], info["dimension_M"])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
