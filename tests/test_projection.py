import tracemalloc

import numpy as np
import pytest
import torch

from mftma.cache.projection import BLOCK_ROWS, BatchReducer, LayerReduction, RandomProjection, layer_seed
from mftma.errors import InputError


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
