"""The modern estimator API: analyze_manifolds, ManifoldAnalysis, GeometryResult, and theory checks."""
import numpy as np
import pandas as pd
import pytest

from mftma import GeometryResult, ManifoldAnalysis, analyze_manifolds
from mftma.cli import main


def _clouds(rng, P=6, N=40, M=10):
    return [rng.standard_normal((N, M)) for _ in range(P)]


def test_result_fields_and_averages(rng):
    result = analyze_manifolds(_clouds(rng), n_t=40, n_reps=2, seed=0)
    assert isinstance(result, GeometryResult)
    for name in ("capacity", "radius", "dimension"):
        assert getattr(result, name).shape == (6,)
    assert result.capacity_avg == pytest.approx(1 / np.mean(1 / result.capacity))
    assert result.radius_avg == pytest.approx(result.radius.mean())
    assert result.dimension_avg == pytest.approx(result.dimension.mean())
    assert result.settings == {
        "kappa": 0.0, "n_t": 40, "n_reps": 2, "seed": 0, "backend": "numba", "t_vecs": "seeded"
    }
    assert set(result.timings) == {"validation", "moments", "center_structure", "reduction", "anchor_points", "total"}
    assert result.timings["total"] >= result.timings["anchor_points"] >= 0


def test_deterministic_given_seed(rng):
    clouds = _clouds(rng)
    first, second = (analyze_manifolds(clouds, n_t=40, n_reps=2, seed=3) for _ in range(2))
    np.testing.assert_array_equal(first.capacity, second.capacity)
    assert first.K == second.K


def test_to_frame_is_tidy(rng):
    result = analyze_manifolds(_clouds(rng), n_t=30, n_reps=2, seed=0)
    frame = result.to_frame()
    assert list(frame.columns) == ["manifold", "metric", "value"]
    per_manifold = frame[frame.manifold.notna()]
    assert len(per_manifold) == 18 and set(per_manifold.metric) == {"capacity", "radius", "dimension"}
    summary = frame[frame.manifold.isna()].set_index("metric")["value"]
    structure = {"structure_agreement", "structure_objective", "runner_up_objective", "runner_up_K"}
    assert set(summary.index) == {"capacity", "radius", "dimension", "center_correlation", "K"} | structure
    assert summary[list(structure)].to_dict() == {name: result.structure[name] for name in structure}
    assert pd.api.types.is_integer_dtype(frame.manifold.dtype)


def test_given_t_vecs_are_used(rng):
    """Each manifold's own t vectors decide the result: another draw changes it; repeating every vector doesn't."""
    clouds = _clouds(rng, N=40, M=10)
    t_vecs = [rng.standard_normal((11, 30)) for _ in clouds]
    other = [rng.standard_normal((11, 30)) for _ in clouds]
    given = analyze_manifolds(clouds, n_t=30, t_vecs=t_vecs, n_reps=2, seed=0)
    redrawn = analyze_manifolds(clouds, n_t=30, t_vecs=other, n_reps=2, seed=0)
    doubled = analyze_manifolds(clouds, n_t=60, t_vecs=[np.hstack([t, t[:, ::-1]]) for t in t_vecs], n_reps=2, seed=0)
    assert given.settings["t_vecs"] == "given"
    assert given.K == redrawn.K == doubled.K
    for name in ("capacity", "radius", "dimension"):
        # averages over t: the same vectors, twice and in another order, give the same averages
        np.testing.assert_allclose(getattr(doubled, name), getattr(given, name), rtol=1e-10, err_msg=name)
        assert np.all(getattr(redrawn, name) != getattr(given, name)), name


def test_sklearn_style_estimator_forwards_its_settings(rng):
    manifolds = np.stack(_clouds(rng))
    t_vecs = [rng.standard_normal((11, 30)) for _ in manifolds]
    model = ManifoldAnalysis(kappa=0.2, n_t=30, n_reps=2, seed=1)
    assert model.fit(manifolds, t_vecs=t_vecs) is model
    expected = analyze_manifolds(manifolds, 0.2, 30, t_vecs=t_vecs, n_reps=2, seed=1)
    assert model.result_.settings == expected.settings
    for name in ("capacity", "radius", "dimension"):
        np.testing.assert_array_equal(getattr(model, f"{name}_"), getattr(expected, name))
        assert getattr(model, f"{name}_avg_") == getattr(expected, f"{name}_avg")
    assert (model.K_, model.center_correlation_) == (expected.K, expected.center_correlation)
    seeded = ManifoldAnalysis(kappa=0.2, n_t=30, n_reps=2, seed=1).fit(manifolds)
    assert seeded.result_.settings["t_vecs"] == "seeded"
    assert np.all(seeded.capacity_ != model.capacity_)


def test_point_manifolds_have_capacity_two(rng):
    """Manifolds shrunk to (almost) a point: the Gardner capacity 2."""
    centers = rng.standard_normal((8, 30, 1))
    manifolds = centers + 1e-9 * rng.standard_normal((8, 30, 5))
    result = analyze_manifolds(manifolds, n_t=2000, n_reps=2, seed=0)
    np.testing.assert_allclose(result.capacity, 2.0, rtol=0.2)
    assert result.capacity_avg == pytest.approx(2.0, rel=0.05)


def test_larger_margin_lowers_capacity(rng):
    clouds = _clouds(rng, P=4, N=30, M=8)
    capacities = [analyze_manifolds(clouds, kappa, 100, n_reps=2, seed=0).capacity_avg for kappa in (0.0, 0.5, 1.0)]
    assert capacities[0] > capacities[1] > capacities[2]


def test_unstructured_clouds_give_two_over_m(rng):
    M = 20
    result = analyze_manifolds([rng.standard_normal((400, M)) for _ in range(8)], n_t=200, n_reps=2, seed=0)
    assert result.capacity_avg == pytest.approx(2 / M, rel=0.15)


@pytest.mark.slow
def test_readme_random_example_reduced():
    """The README example (P=100, N=5000, M=50) at a CI size: same M, so the same per-manifold geometry.

    The full size gives capacity 0.0396, radius 1.473, dimension 36.18 (checked by benchmarks/bench_estimator.py).
    """
    rng = np.random.default_rng(0)
    result = analyze_manifolds([rng.standard_normal((1000, 50)) for _ in range(20)], n_t=200, seed=0)
    assert result.capacity_avg == pytest.approx(0.0396, rel=0.05)
    assert result.radius_avg == pytest.approx(1.473, rel=0.05)
    assert result.dimension_avg == pytest.approx(36.18, rel=0.05)


def test_demo_command_prints_a_table(capsys):
    assert main(["demo", "--P", "4", "--N", "30", "--M", "8", "--n-t", "20", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    for family in ("random clouds", "low-dim manifolds", "shared centers"):
        assert family in out
    assert "capacity" in out and "K" in out


def test_both_bases_give_the_same_geometry(rng):
    """Seeded runs factor the Gram matrix, given t vectors use the reference's QR basis: same inner products."""
    from mftma.estimator.analysis import centered_gram, reduced_points

    manifold = rng.standard_normal((50, 7)) + 2.0
    mean, origin = manifold.mean(axis=1), np.zeros(50)
    directions = np.linalg.qr(rng.standard_normal((50, 2)))[0]
    grams = centered_gram(manifold, mean), None
    fast, reference = (reduced_points(manifold, mean, gram, origin, directions, 0) for gram in grams)
    assert fast.shape == reference.shape == (8, 7)
    np.testing.assert_allclose(fast.T @ fast, reference.T @ reference, atol=1e-12)


@pytest.mark.parametrize("duplicated", [False, True])
def test_gram_factor_reproduces_the_gram_matrix(rng, duplicated):
    """Cholesky path for points in general position, eigendecomposition when they span less (duplicates)."""
    from mftma.estimator.analysis import centered_gram, gram_factor

    manifold = rng.standard_normal((30, 8)) + 3.0
    if duplicated:
        manifold[:, 1] = manifold[:, 0]
    gram = centered_gram(manifold, manifold.mean(axis=1))
    points = gram_factor(gram)
    np.testing.assert_allclose(points.T @ points, gram, atol=1e-10)
    np.testing.assert_allclose(points.sum(axis=1), 0.0, atol=1e-10 if not duplicated else 1e-5)
    # continuous in the data: a float32-sized perturbation moves the points by as little
    perturbed = gram_factor(centered_gram(manifold + 1e-7, manifold.mean(axis=1) + 1e-7))
    np.testing.assert_allclose(perturbed, points, atol=1e-5)
