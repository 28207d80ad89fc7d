import tracemalloc

import numpy as np
import pytest
import torch

from threadpoolctl import threadpool_limits

from mftma.cache.projection import (BLOCK_ROWS, SPARSE_NONZEROS, BatchReducer, LayerReduction, RandomProjection,
                                    SparseSignProjection, layer_seed)
from mftma.errors import InputError
from mftma.estimator.analysis import analyze_manifolds
from mftma.estimator.synthetic import synthetic_manifolds


def test_matrix_is_a_function_of_seed_and_layer_only():
    first = RandomProjection(1300, 20, layer_seed(3, "conv2")).matrix()
    again = RandomProjection(1300, 20, layer_seed(3, "conv2"), cache_bytes=0).matrix()
    other_layer = RandomProjection(1300, 20, layer_seed(3, "conv3")).matrix()
    other_seed = RandomProjection(1300, 20, layer_seed(4, "conv2")).matrix()
    assert first.dtype == np.float32 and first.shape == (1300, 20)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other_layer) and not np.allclose(first, other_seed)


def test_projection_equals_product_with_the_matrix_and_is_bitwise_stable(rng):
    x = rng.standard_normal((7, 3 * BLOCK_ROWS + 5)).astype(np.float32)
    kept = RandomProjection(x.shape[1], 30, layer_seed(0, "fc"))
    regenerated = RandomProjection(x.shape[1], 30, layer_seed(0, "fc"), cache_bytes=0)
    np.testing.assert_allclose(kept(x), x.astype(np.float64) @ kept.matrix(), rtol=1e-4, atol=1e-4)
    for _ in range(2):  # same result at every "epoch", whether blocks are kept or regenerated
        np.testing.assert_array_equal(kept(x), regenerated(x))


def test_gaussian_scaling_preserves_norms(rng):
    matrix = RandomProjection(4000, 2000, layer_seed(0, "x")).matrix()
    assert abs(matrix.mean()) < 1e-3
    assert matrix.var() == pytest.approx(1 / 2000, rel=0.01)
    x = rng.standard_normal((5, 4000))
    ratio = np.linalg.norm(x @ matrix, axis=1) / np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(ratio, 1.0, atol=0.08)


def _peak_bytes(in_features, batches=3):
    projection = RandomProjection(in_features, 64, layer_seed(0, "big"), cache_bytes=0)
    x = np.ones((4, in_features), dtype=np.float32)
    tracemalloc.start()
    for _ in range(batches):
        projection(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_of_a_million_feature_layer_does_not_grow_with_layer_size():
    small, large = _peak_bytes(10**5), _peak_bytes(10**6)
    block = BLOCK_ROWS * 64 * 4
    # a few blocks plus interpreter noise (other tests' caches, threads), never the 256 MB matrix
    assert large < 8 * block + 2**20
    assert large < 1.5 * small


def test_plan_stores_small_layers_as_is_and_reduces_large_ones():
    small = LayerReduction.plan("fc", (100,), projection_dim=200)
    assert small.method == "none" and small.out_features == 100 and small.projection() is None
    projected = LayerReduction.plan("conv", (8, 30), projection_dim=200)
    assert projected.method == "projection" and projected.in_features == 240 and projected.out_features == 200
    pooled = LayerReduction.plan("conv", (8, 30), projection_dim=200, pool=True)
    assert pooled.method == "pool" and pooled.out_features == 8
    both = LayerReduction.plan("conv", (300, 4, 4), projection_dim=200, pool=True)
    assert both.method == "pool+projection" and both.in_features == 300 and both.out_features == 200
    assert both.describe()["original_shape"].tolist() == [300, 4, 4]


def test_reducer_pools_per_channel_then_projects():
    reduction = LayerReduction.plan("conv", (300, 2, 3), projection_dim=50, pool=True, seed=1)
    activations = torch.randn(6, 300, 2, 3)
    expected = activations.mean(dim=(2, 3)).numpy() @ reduction.projection().matrix()
    np.testing.assert_allclose(BatchReducer(reduction)(activations), expected, rtol=1e-4, atol=1e-5)


def test_bad_settings_and_shapes_raise_input_errors():
    with pytest.raises(InputError, match="pool"):
        LayerReduction.plan("fc", (10,), projection_dim=5, pool="mean")
    with pytest.raises(InputError, match="projection_dim"):
        LayerReduction.plan("fc", (10,), projection_dim=0)
    reducer = BatchReducer(LayerReduction.plan("fc", (10,), projection_dim=5))
    with pytest.raises(InputError, match="shape"):
        reducer(torch.zeros(2, 11))


def test_projection_does_not_depend_on_the_thread_count(rng, monkeypatch):
    from mftma.cache import projection

    x = rng.standard_normal((6, 5 * BLOCK_ROWS + 3)).astype(np.float32)
    outputs = []
    for threads in (1, 3):
        monkeypatch.setattr(projection, "PROJECTION_THREADS", threads)
        outputs.append(RandomProjection(x.shape[1], 40, layer_seed(1, "conv"), cache_bytes=0)(x))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_sparse_matrix_has_one_signed_entry_per_block_and_depends_on_seed_and_layer_only():
    matrix = SparseSignProjection(700, 50, layer_seed(3, "conv2")).matrix()
    assert matrix.dtype == np.float32 and matrix.shape == (700, 50)
    np.testing.assert_array_equal(matrix, SparseSignProjection(700, 50, layer_seed(3, "conv2")).matrix())
    for other in (layer_seed(3, "conv3"), layer_seed(4, "conv2")):
        assert not np.array_equal(matrix, SparseSignProjection(700, 50, other).matrix())
    q = SPARSE_NONZEROS
    np.testing.assert_allclose(np.abs(matrix[matrix != 0]), 1 / np.sqrt(q), rtol=1e-6)
    bounds = np.linspace(0, 50, q + 1).astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:]):  # exactly one nonzero per row in every block
        np.testing.assert_array_equal((matrix[:, start:stop] != 0).sum(axis=1), 1)
    signs = np.sign(matrix[matrix != 0])
    assert abs(signs.mean()) < 0.05  # both signs, about equally often
    assert SparseSignProjection(700, 3, layer_seed(0, "x")).nonzeros == 3  # never more blocks than outputs


def test_sparse_projection_is_bitwise_independent_of_batch_size_and_threads(rng):
    x = rng.standard_normal((13, 3000)).astype(np.float32)
    projection = SparseSignProjection(3000, 200, layer_seed(1, "conv"))
    whole = projection(x)
    np.testing.assert_allclose(whole, x.astype(np.float64) @ projection.matrix(), rtol=1e-4, atol=1e-5)
    for size in (1, 4, 6):
        np.testing.assert_array_equal(np.concatenate([projection(x[i:i + size]) for i in range(0, 13, size)]),
                                      whole)
    for threads in (1, 2):
        with threadpool_limits(threads):
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                again = SparseSignProjection(3000, 200, layer_seed(1, "conv")).project(torch.from_numpy(x))
            finally:
                torch.set_num_threads(previous)
        np.testing.assert_array_equal(again, whole)


@pytest.mark.parametrize("kind", [RandomProjection, SparseSignProjection])
def test_torch_path_of_other_devices_agrees_with_the_cpu_path(kind, rng):
    """The code path GPUs take (torch ops on the batch's device), run here on the CPU."""
    x = rng.standard_normal((9, 2 * BLOCK_ROWS + 7)).astype(np.float32)
    projection = kind(x.shape[1], 60, layer_seed(2, "fc"))
    np.testing.assert_allclose(projection._torch(torch.from_numpy(x)).numpy(), projection(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", [RandomProjection, SparseSignProjection])
def test_norms_and_inner_products_are_preserved_within_jl_bounds(kind, rng):
    n, features, k = 40, 4096, 1024
    x = rng.standard_normal((n, features)) * rng.exponential(1.0, features)  # unequal feature scales
    y = kind(features, k, layer_seed(0, "x"))(x.astype(np.float32)).astype(np.float64)
    gram, projected = x @ x.T, y @ y.T
    norms = np.sqrt(np.diag(gram))
    distortion = (projected - gram) / np.outer(norms, norms)  # relative error of every inner product
    # sd of a squared-norm ratio is sqrt(2/k) = 0.044 and of a normalized inner product about 1/sqrt(k)
    ratios = np.diag(distortion)
    assert abs(ratios.mean()) < 3 * np.sqrt(2 / k / n) and np.abs(ratios).max() < 5 * np.sqrt(2 / k)
    off = distortion[np.triu_indices(n, 1)]
    assert np.abs(off).max() < 5 / np.sqrt(k) and np.sqrt(np.mean(off ** 2)) < 1.3 / np.sqrt(k)


def test_sparse_projection_keeps_the_norm_of_sparse_inputs_exactly():
    """Unlike very sparse (Achlioptas/Li) projections, each block is a CountSketch: one-hot inputs keep their norm."""
    projection = SparseSignProjection(5000, 64, layer_seed(0, "x"))
    one_hot = np.eye(5000, dtype=np.float32)[::97]
    np.testing.assert_allclose(np.linalg.norm(projection(one_hot), axis=1), 1.0, rtol=1e-6)


def test_mftma_geometry_after_sparse_projection_agrees_with_gaussian_projections():
    """Capacity, radius and dimension after the sparse projection lie within the spread of dense projections."""
    P, N, M, k = 6, 1024, 15, 96
    manifolds = synthetic_manifolds("gaussian", P, N, M, radius=1.0, dimension=8, seed=0).astype(np.float32)
    points = manifolds.transpose(0, 2, 1).reshape(P * M, N)

    def geometry(kind, seed):
        projected = kind(N, k, layer_seed(seed, "layer"))(points).reshape(P, M, k).transpose(0, 2, 1)
        result = analyze_manifolds(list(projected), n_t=200, n_reps=1, seed=0)
        return [result.capacity_avg, result.radius_avg, result.dimension_avg]

    gaussian = np.array([geometry(RandomProjection, seed) for seed in range(4)])
    sparse = np.array([geometry(SparseSignProjection, seed) for seed in range(2)])
    spread = gaussian.std(axis=0, ddof=1)
    assert np.all(spread > 0)
    np.testing.assert_array_less(np.abs(sparse.mean(axis=0) - gaussian.mean(axis=0)), 3 * spread)
