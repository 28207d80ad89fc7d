"""Cache settings added by issue 11: the projection kind and the device of the forward pass and projection."""
import argparse
import json

import h5py
import numpy as np
import pytest
import torch

from mftma.cache import ActivationCache, cache_activations
from mftma.cache.projection import LayerReduction
from mftma.cli import cache as cache_cli
from mftma.errors import DataFileError, InputError
from mftma.experiments.config import CacheConfig, load_config
from mftma.experiments.training import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny run (an MLP on MNIST-1D, fc1 has 32 features), trained for one epoch."""
    config = load_config("tiny").replace(training={"epochs": 1}, cache={"batch_size": 16})
    return train(config, tmp_path_factory.mktemp("device") / "run", progress=False)


@pytest.fixture
def fresh(run):
    """The run without an activation cache."""
    (run.path / "activations.h5").unlink(missing_ok=True)
    return run


def test_sparse_projection_is_recorded_and_a_cache_of_another_projection_is_stale(fresh):
    path = cache_activations(fresh, epochs=[1], layers=["fc1"], subsets=["test"], projection_dim=10,
                             projection="sparse", device="cpu", progress=False)
    with ActivationCache(path) as cache:
        metadata, info = cache.metadata, cache.layer_info("fc1")
        sample = cache.sample("test")
        stored = cache.features(1, "fc1", "test")[0]
    assert metadata["cache_settings"]["projection"] == "sparse" and metadata["devices"] == ["cpu"]
    assert info["projection"] == "sparse" and info["projection_nonzeros"] == 8
    x = fresh.dataset().x_test[torch.as_tensor(sample["indices"])]
    activations = fresh.load_model(1).activations(x, ["fc1"])["fc1"].detach().numpy()
    matrix = LayerReduction.plan("fc1", (32,), 10, kind="sparse").projection().matrix()
    np.testing.assert_allclose(stored, activations @ matrix, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataFileError, match="projection.*sparse.*--rebuild"):
        cache_activations(fresh, epochs=[1], layers=["fc1"], subsets=["test"], projection_dim=10,
                          projection="gaussian", progress=False)
    # the device is metadata only: resuming on "auto" (the CPU here) continues the same cache
    cache_activations(fresh, epochs=[0, 1], layers=["fc1"], subsets=["test"], projection_dim=10,
                      projection="sparse", device="auto", progress=False)
    with ActivationCache(path) as cache:
        assert cache.epochs == [0, 1] and cache.metadata["devices"] == ["cpu"]


def test_caches_written_before_the_projection_choice_count_as_gaussian(fresh):
    path = cache_activations(fresh, epochs=[0], layers=["fc1"], subsets=["test"], projection_dim=10,
                             progress=False)
    with h5py.File(path, "r+") as h5:  # as written before issue 11
        settings = json.loads(h5.attrs["cache_settings"])
        del settings["projection"]
        h5.attrs["cache_settings"] = json.dumps(settings, sort_keys=True)
        for key in ("projection", "projection_nonzeros"):
            del h5["layers/fc1"].attrs[key]
    cache_activations(fresh, epochs=[0, 1], layers=["fc1"], subsets=["test"], projection_dim=10, progress=False)
    with pytest.raises(DataFileError, match="--rebuild"):
        cache_activations(fresh, epochs=[1], layers=["fc1"], subsets=["test"], projection_dim=10,
                          projection="sparse", progress=False)


def test_cuda_without_a_gpu_is_a_clear_input_error_and_auto_falls_back_to_the_cpu(fresh, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="'cuda'.*CUDA is not available"):
        cache_activations(fresh, epochs=[1], layers=["fc1"], subsets=["test"], device="cuda", progress=False)
    assert not (fresh.path / "activations.h5").exists()
    cache_activations(fresh, epochs=[1], layers=["logits"], subsets=["test"], device="auto", progress=False)
    with ActivationCache(fresh.path) as cache:
        assert cache.metadata["devices"] == ["cpu"]


def test_bad_projection_and_device_names_are_input_errors(fresh):
    for settings, key in (({"projection": "srht"}, "cache.projection"), ({"device": "gpu"}, "cache.device")):
        with pytest.raises(InputError, match=key):
            CacheConfig(**settings)
    with pytest.raises(InputError, match="cache.projection.*gaussian.*sparse"):
        cache_activations(fresh, epochs=[1], subsets=["test"], projection="dense", progress=False)


def test_cli_passes_projection_and_device(fresh, monkeypatch, capsys):
    parser = argparse.ArgumentParser(prog="mftma")
    cache_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cache", str(fresh.path), "--epochs", "1", "--layers", "fc1", "--subsets", "test",
                              "--projection-dim", "10", "--projection", "sparse", "--device", "cpu",
                              "--no-progress"])
    assert args.func(args) == 0
    with ActivationCache(fresh.path) as cache:
        assert cache.layer_info("fc1")["projection"] == "sparse" and cache.metadata["devices"] == ["cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = parser.parse_args(["cache", str(fresh.path), "--device", "cuda", "--no-progress"])
    with pytest.raises(InputError, match="CUDA is not available"):
        args.func(args)
