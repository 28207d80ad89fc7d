"""Anchor-point conventions, geometry formulas, backend selection and the cvxpy reference backend."""
import numpy as np
import pytest
from scipy.optimize import nnls

from mftma.errors import InputError
from mftma.estimator import anchor
from mftma.estimator.backends import cone_projection_solver, select_backend
from mftma.estimator.backends.reference import solve_cone_projections


def cloud(rng, dim, size, radius=1.0):
    """Centered Gaussian points with the constant last coordinate."""
    points = radius * rng.standard_normal((dim, size))
    points -= points.mean(axis=1, keepdims=True)
    return np.vstack([points, np.ones((1, size))])


def nnls_residual(points, t, kappa):
    """``S alpha`` from scipy's NNLS of ``min ||S alpha - t'||``, an independent oracle."""
    shifted = t.copy()
    shifted[-1] += kappa
    return points @ nnls(points, shifted)[0]


def test_select_backend_names_and_errors():
    assert select_backend("numba") == "numba"
    assert select_backend("cvxpy") == "cvxpy"
    assert select_backend("auto") in ("numba", "cuda")
    with pytest.raises(InputError, match="valid backends are 'auto', 'cvxpy', 'numba', 'cuda'"):
        select_backend("gpu")


@pytest.mark.parametrize("kappa", [0.0, 0.7])
def test_reference_backend_matches_nnls(rng, kappa):
    points = [cloud(rng, 4, 6), cloud(rng, 7, 5, radius=0.3)]
    t_vecs = [rng.standard_normal((5, 15)), rng.standard_normal((8, 15))]
    for s, t, residual in zip(points, t_vecs, solve_cone_projections(points, t_vecs, kappa)):
        expected = np.column_stack([nnls_residual(s, t[:, i], kappa) for i in range(t.shape[1])])
        np.testing.assert_allclose(residual, expected, rtol=0, atol=1e-10)


def test_inactive_and_interior_t_get_the_max_projection_point(rng):
    points = cloud(rng, 3, 5)
    inactive = np.array([0.1, -0.2, 0.3, -50.0])
    touching = rng.standard_normal(4) + np.array([0, 0, 0, 5.0])
    t_vec = np.column_stack([inactive, touching, touching])
    residual = np.column_stack([np.zeros(4), nnls_residual(points, touching, 0.0), np.full(4, 1e-9)])
    anchors = anchor.anchor_points(points, t_vec, residual, 0.0)
    fallback = anchor.max_projection_points(points, t_vec)
    np.testing.assert_array_equal(anchors[:, [0, 2]], fallback[:, [0, 2]])
    np.testing.assert_allclose(anchors[:, 1], residual[:, 1] / residual[-1, 1])
    assert anchors[-1, 1] == pytest.approx(1.0)


def test_max_projection_point_uses_first_coordinates(rng):
    points = cloud(rng, 4, 9)
    t_vec = rng.standard_normal((5, 20))
    chosen = anchor.max_projection_points(points, t_vec)
    best = np.argmax(t_vec[:4].T @ points[:4], axis=1)
    np.testing.assert_array_equal(chosen, points[:, best])


def test_geometry_formulas_by_hand():
    t_vec = np.array([[1.0, -1.0], [0.0, 2.0], [1.0, 1.0]])
    anchors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    capacity, radius, dimension = anchor.geometry_from_anchor_points(t_vec, anchors, 0.0)
    # t.s = 2 and 3, ||s||^2 = 2 and 2: 1 / mean(4/2, 9/2)
    assert capacity == pytest.approx(1 / np.mean([2.0, 4.5]))
    # centered first coordinates (0.5, -0.5) and (-0.5, 0.5): each squared norm 0.5
    assert radius == pytest.approx(np.sqrt(0.5))
    # cosines between (1, 0) & (1, 0) and (-1, 2) & (0, 1): 1 and 2/sqrt(5)
    cosines = [1.0, 2 / np.sqrt(5)]
    assert dimension == pytest.approx(2 * np.mean(cosines) ** 2, rel=1e-10)


def test_point_manifold_capacity_is_one_over_mean_relu_squared(rng):
    point = np.vstack([np.zeros((5, 4)), np.ones((1, 4))])
    t_vec = rng.standard_normal((6, 4000))
    capacity, radius, dimension = anchor.each_manifold_geometry(point, t_vec, backend="numba")
    assert capacity == pytest.approx(1 / np.mean(np.maximum(t_vec[-1], 0) ** 2), rel=1e-12)
    assert capacity == pytest.approx(2.0, rel=0.1)
    assert radius == 0.0
    assert dimension == 0.0


def test_larger_margin_lowers_capacity(rng):
    points = cloud(rng, 10, 12, radius=0.5)
    t_vec = rng.standard_normal((11, 100))
    capacities = [anchor.each_manifold_geometry(points, t_vec, kappa, "numba")[0] for kappa in (0, 0.2, 1)]
    assert capacities[0] > capacities[1] > capacities[2]


def test_many_manifolds_equal_one_at_a_time(rng):
    points = [cloud(rng, 6, 8), cloud(rng, 3, 4, radius=2.0), cloud(rng, 9, 12, radius=0.2)]
    t_vecs = [rng.standard_normal((s.shape[0], 30)) for s in points]
    together = anchor.anchor_geometry(points, t_vecs, 0.3, backend="numba")
    assert all(column.shape == (3,) and column.dtype == np.float64 for column in together)
    for p, (s, t) in enumerate(zip(points, t_vecs)):
        alone = anchor.each_manifold_geometry(s, t, 0.3, backend="numba")
        assert alone == tuple(column[p] for column in together)


def test_cone_projection_solver_resolves_modules():
    assert cone_projection_solver("cvxpy") is solve_cone_projections
