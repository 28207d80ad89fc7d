import argparse
import errno
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import mftma.cache.writer as writer
from mftma.cache import ActivationCache, cache_activations
from mftma.cache.projection import BatchReducer, LayerReduction
from mftma.cli import cache as cache_cli
from mftma.errors import DataFileError, InputError
from mftma.experiments.checkpoints import checkpoint_path
from mftma.experiments.config import load_config
from mftma.experiments.run import Run
from mftma.experiments.training import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny run (an MLP on 400 MNIST-1D examples; 10 classes x M=5), trained once for 2 epochs."""
    config = load_config("tiny").replace(training={"epochs": 2}, cache={"batch_size": 16})
    return train(config, tmp_path_factory.mktemp("trained") / "run", progress=False).path


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the tiny run, so every test starts without a cache."""
    return Run(shutil.copytree(trained, tmp_path / "run"))


def _inputs(run, sample):
    data = run.dataset()
    return (data.x_test if sample["split"] == "test" else data.x_train)[torch.as_tensor(sample["indices"])]


def _contents(path):
    """Every entry's data, the samples and the layer records of a cache, for equality checks."""
    with ActivationCache(path) as cache:
        data = {(row.epoch, row.layer, row.subset): cache.features(row.epoch, row.layer, row.subset)[0]
                for row in cache.entries().itertuples()}
        samples = {subset: cache.sample(subset) for subset in cache.subsets}
        return data, samples, {name: cache.layer_info(name) for name in cache.layers}


def _assert_same_contents(path, other):
    (data, samples, layers), (data2, samples2, layers2) = _contents(path), _contents(other)
    assert data.keys() == data2.keys()
    for key in data:
        np.testing.assert_array_equal(data[key], data2[key])
    assert layers == layers2
    assert samples.keys() == samples2.keys()
    for name in samples:
        for key, value in samples[name].items():
            np.testing.assert_array_equal(value, samples2[name][key])


def test_reader_layout_equals_direct_model_activations(run):
    path = cache_activations(run, progress=False)
    with ActivationCache(run.path) as cache:
        assert cache.epochs == [0, 1, 2] and cache.layers == ["input", "fc1", "fc2", "logits"]
        assert cache.subsets == ["unpermuted", "permuted", "restored", "shuffled", "test"]
        entries = cache.entries()
        assert len(entries) == 3 * 4 * 5 and entries["complete"].all()
        assert set(entries["P"]) == {10} and set(entries["M"]) == {5}
        for epoch in cache.epochs:
            model = run.load_model(epoch)
            for subset in cache.subsets:
                sample = cache.sample(subset)
                direct = model.activations(_inputs(run, sample), cache.layers)
                for layer in cache.layers:
                    expected = direct[layer].detach().flatten(1).numpy()
                    manifolds = cache.manifolds(epoch, layer, subset)
                    assert len(manifolds) == 10 and manifolds[0].shape == (expected.shape[1], 5)
                    for p, manifold in enumerate(manifolds):
                        np.testing.assert_allclose(manifold, expected[5 * p:5 * (p + 1)].T, rtol=1e-5, atol=1e-6)
                    X, labels = cache.features(epoch, layer, subset)
                    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)
                    np.testing.assert_array_equal(labels, sample["labels"])
        metadata = cache.metadata
    assert metadata["format"] == "mftma-activation-cache"
    assert metadata["run_settings_hash"] == run.config.settings_hash()
    assert metadata["cache_settings"]["M"] == 5 and metadata["cache_settings"]["P"] == 10
    assert metadata["model"]["name"] == "mlp"
    assert metadata["dataset"] == "mnist1d" and metadata["epsilon"] == 0.25
    with h5py.File(path) as h5:
        assert h5["epoch_0001"].attrs["weights_hash"] == run.weights_hash(1)
        assert h5.attrs["format_version"] == 2
        assert h5["epoch_0001/fc1/test"].dtype == np.float32 and h5["epoch_0001/fc1/test"].compression == "lzf"
        # each example stored once per (epoch, layer): one entry per selection, not per grouping
        assert sorted(h5["epoch_0001/fc1"]) == ["kept", "randomized", "test"]
        assert h5["epoch_0001/fc1/randomized"].shape == (50, 32)
        assert h5["epoch_0002/input/randomized"] == h5["epoch_0000/input/randomized"]  # stored once, hard-linked


def _as_version_1(path, target):
    """A format-1 copy of a cache, as older mftma wrote it: each subset's features stored in its own order."""
    with ActivationCache(path) as cache, h5py.File(path) as source, h5py.File(target, "w") as h5:
        h5.attrs.update(source.attrs)
        h5.attrs["format_version"] = 1
        source.copy("layers", h5)
        for subset in ("unpermuted", "permuted", "restored", "test"):
            sample = cache.sample(subset)
            for key in ("indices", "labels", "classes"):
                h5[f"samples/{subset}/{key}"] = sample[key]
            h5[f"samples/{subset}"].attrs.update({key: sample[key] for key in ("split", "M", "P")})
        for row in cache.entries().itertuples():
            if row.subset != "shuffled":
                h5.require_group(f"epoch_{row.epoch:04d}").attrs.update(source[f"epoch_{row.epoch:04d}"].attrs)
                entry = h5.create_dataset(f"epoch_{row.epoch:04d}/{row.layer}/{row.subset}",
                                          data=cache.features(row.epoch, row.layer, row.subset)[0])
                entry.attrs.update({"complete": True, "P": row.P, "M": row.M})
    return target


def _by_example(cache, epoch, layer, subset):
    """``{example index: feature row}`` of a subset."""
    X, _ = cache.features(epoch, layer, subset)
    return dict(zip(cache.sample(subset)["indices"].tolist(), X))


def test_groupings_of_the_randomized_examples_share_their_stored_features(run):
    cache_activations(run, epochs=[0, 2], layers=["input", "fc2"], progress=False)
    with ActivationCache(run.path) as cache:
        shuffled, permuted = cache.sample("shuffled"), cache.sample("permuted")
        assert np.array_equal(np.bincount(shuffled["labels"]), np.full(10, 5))
        assert not np.array_equal(shuffled["indices"], permuted["indices"])
        for epoch, layer in [(0, "input"), (2, "fc2")]:
            reference = _by_example(cache, epoch, layer, "permuted")
            for subset in ("restored", "shuffled"):
                rows = _by_example(cache, epoch, layer, subset)
                assert rows.keys() == reference.keys()
                for index, row in rows.items():
                    np.testing.assert_array_equal(row, reference[index])


def test_version_1_caches_stay_readable_and_gain_the_shuffled_grouping(run, tmp_path):
    path = cache_activations(run, epochs=[0, 2], layers=["fc1", "logits"], progress=False)
    old = _as_version_1(path, tmp_path / "old.h5")
    with ActivationCache(path) as new, ActivationCache(old) as cache:
        assert cache.format_version == 1 and cache.subsets == new.subsets
        assert cache.entries().equals(new.entries())
        for subset in new.subsets:
            for key in ("indices", "labels", "classes"):
                np.testing.assert_array_equal(cache.sample(subset)[key], new.sample(subset)[key])
            for epoch, layer in [(0, "fc1"), (2, "logits")]:
                X, labels = cache.features(epoch, layer, subset)
                np.testing.assert_array_equal(X, new.features(epoch, layer, subset)[0])
                np.testing.assert_array_equal(labels, new.features(epoch, layer, subset)[1])
                for a, b in zip(cache.manifolds(epoch, layer, subset), new.manifolds(epoch, layer, subset)):
                    np.testing.assert_array_equal(a, b)
    shutil.copyfile(old, path)
    with pytest.raises(DataFileError, match="older format version 1.*--rebuild"):
        cache_activations(run, epochs=[1], progress=False)
    cache_activations(run, epochs=[1], layers=["fc1"], rebuild=True, progress=False)
    with ActivationCache(path) as cache:
        assert cache.format_version == 2 and cache.epochs == [1]


def test_float16_storage_halves_the_entries_and_reads_back_as_float32(run, trained, tmp_path, monkeypatch):
    reference = cache_activations(Run(shutil.copytree(trained, tmp_path / "reference")), epochs=[2],
                                  progress=False)
    path = cache_activations(run, epochs=[2], dtype="float16", progress=False)
    with h5py.File(path) as h5, h5py.File(reference) as h5_reference:
        assert h5["epoch_0002/fc1/kept"].dtype == np.float16
        stored = [file["epoch_0002/fc1/kept"].id.get_storage_size() for file in (h5, h5_reference)]
        assert stored[0] < stored[1]
    with ActivationCache(path) as cache, ActivationCache(reference) as exact:
        assert cache.metadata["cache_settings"]["dtype"] == "float16"
        for subset in cache.subsets:
            X = cache.features(2, "fc2", subset)[0]
            assert X.dtype == np.float32
            np.testing.assert_allclose(X, exact.features(2, "fc2", subset)[0], rtol=2**-10, atol=1e-4)
    with pytest.raises(DataFileError, match="--rebuild"):  # the storage type is part of the cache's settings
        cache_activations(run, epochs=[2], progress=False)
    original = BatchReducer.__call__
    monkeypatch.setattr(BatchReducer, "__call__", lambda self, x: original(self, x) * np.float32(1e6))
    with pytest.raises(InputError, match="beyond the range of cache.dtype float16.*float32"):
        cache_activations(run, epochs=[2], dtype="float16", rebuild=True, progress=False)


def test_large_layers_are_projected_with_the_same_matrix_at_every_epoch(run):
    cache_activations(run, layers=["fc1", "logits"], subsets=["test"], projection_dim=10, progress=False)
    with ActivationCache(run.path) as cache:
        info = cache.layer_info("fc1")
        assert info["reduction"] == "projection" and info["original_shape"] == [32] and info["features"] == 10
        assert cache.layer_info("logits")["reduction"] == "none"
        matrix = LayerReduction.plan("fc1", (32,), 10, seed=0).projection().matrix()
        x = _inputs(run, cache.sample("test"))
        for epoch in cache.epochs:
            expected = run.load_model(epoch).activations(x, ["fc1"])["fc1"].detach().numpy() @ matrix
            np.testing.assert_allclose(cache.features(epoch, "fc1", "test")[0], expected, rtol=1e-4, atol=1e-5)
    with h5py.File(run.path / "activations.h5", "r") as h5:
        epoch = next(name for name in h5 if name.startswith("epoch_"))
        projected, native = h5[epoch]["fc1"]["test"], h5[epoch]["logits"]["test"]
        # projected features are dense mixtures: byte shuffle + gzip; native ReLU-like outputs: lzf
        assert (projected.compression, projected.shuffle, native.compression, native.shuffle) == (
            "gzip", True, "lzf", False)


def test_convolutional_layers_are_pooled_per_channel_then_projected(tmp_path):
    config = load_config("tiny").replace(
        training={"epochs": 1}, model={"name": "cnn1d", "options": {"channels": [40, 4], "hidden": 8}})
    run = train(config, tmp_path / "cnn", progress=False)
    cache_activations(run, epochs=[1], subsets=["test"], projection_dim=30, pool=True, progress=False)
    with ActivationCache(run.path) as cache:
        # input 1 x 40 -> 1; conv1 40 channels x 20 positions -> 40 -> projected to 30; conv2 4 x 10 -> 4
        assert [cache.layer_info(name)["reduction"] for name in cache.layers] == [
            "pool", "pool+projection", "pool", "none", "none"]
        x = _inputs(run, cache.sample("test"))
        with torch.no_grad():
            direct = run.load_model(1).activations(x, ["conv1", "conv2"])
        matrix = LayerReduction.plan("conv1", (40, 20), 30, pool=True).projection().matrix()
        expected = {"conv1": direct["conv1"].mean(2).numpy() @ matrix, "conv2": direct["conv2"].mean(2).numpy()}
        for layer, features in expected.items():
            np.testing.assert_allclose(cache.features(1, layer, "test")[0], features, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_resume_after_a_kill_at_a_random_point_equals_an_uninterrupted_run(run, trained, tmp_path, monkeypatch,
                                                                            seed):
    reference = cache_activations(Run(shutil.copytree(trained, tmp_path / "reference")), progress=False)
    calls = 3 * 4 * (4 + 3 + 3)  # selections x batches (50 in 16s) x layers (the input only at the first epoch)
    kill_at = int(np.random.default_rng(seed).integers(1, calls))
    original = BatchReducer.__call__
    counter = iter(range(kill_at))

    def dying(self, activations):
        if next(counter, None) is None:
            raise KeyboardInterrupt
        return original(self, activations)

    monkeypatch.setattr(BatchReducer, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        cache_activations(run, progress=False)
    monkeypatch.setattr(BatchReducer, "__call__", original)
    with ActivationCache(run.path) as cache:
        entries = cache.entries()
        selection = {subset: cache.sample(subset)["selection"] for subset in cache.subsets}
        finished = {(r.epoch, r.layer, selection[r.subset]) for r in entries.itertuples() if r.complete}
        for row in entries[~entries["complete"]].itertuples():
            with pytest.raises(DataFileError, match="incomplete"):
                cache.manifolds(row.epoch, row.layer, row.subset)
    created = []
    create_entry = writer._EpochWriter._create_entry

    def logging_create(self, group, layer, selection, features):
        created.append((int(group.attrs["epoch"]), layer, selection))
        return create_entry(self, group, layer, selection, features)

    monkeypatch.setattr(writer._EpochWriter, "_create_entry", logging_create)
    cache_activations(run, progress=False)
    assert not finished & set(created)
    _assert_same_contents(run.path / "activations.h5", reference)


def test_resume_after_sigkill_of_the_caching_process(run, trained, tmp_path):
    reference = cache_activations(Run(shutil.copytree(trained, tmp_path / "reference")), progress=False)
    kill_at = int(np.random.default_rng(7).integers(1, 3 * 4 * (4 + 3 + 3)))  # a random reduction, as above
    script = f"""
import os, signal
from mftma.cache import cache_activations
from mftma.cache.projection import BatchReducer
from mftma.experiments.run import Run
original, calls = BatchReducer.__call__, []
def dying(self, activations):
    calls.append(1)
    if len(calls) == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, activations)
BatchReducer.__call__ = dying
cache_activations(Run({str(run.path)!r}), progress=False)
"""
    assert subprocess.run([sys.executable, "-c", script]).returncode == -signal.SIGKILL
    cache_activations(run, progress=False)
    _assert_same_contents(run.path / "activations.h5", reference)


def test_stale_caches_are_refused_and_rebuild_moves_them_aside(run):
    path = cache_activations(run, epochs=[0, 1], subsets=["test"], progress=False)
    with pytest.raises(DataFileError, match="--rebuild"):
        cache_activations(run, epochs=[0], subsets=["test"], M=3, progress=False)
    state = run.state_dict(1)
    state["blocks.logits.0.bias"] = state["blocks.logits.0.bias"] + 1.0
    torch.save({"epoch": 1, "model": state}, checkpoint_path(run.path, 1))
    for epochs in ([0, 1], [2]):  # also when only other epochs are requested
        with pytest.raises(DataFileError, match="stale.*epoch 1.*weights hash"):
            cache_activations(run, epochs=epochs, subsets=["test"], progress=False)
    with h5py.File(path, "r+") as h5:
        h5.attrs["run_settings_hash"] = "another run"
    with pytest.raises(DataFileError, match="stale.*run settings another run"):
        cache_activations(run, epochs=[0], subsets=["test"], progress=False)
    cache_activations(run, epochs=[2], subsets=["test"], rebuild=True, progress=False)
    (moved,) = path.parent.glob("activations.stale-*.h5")
    with h5py.File(moved) as h5:
        assert h5.attrs["run_settings_hash"] == "another run" and h5["epoch_0001/fc1/test"].attrs["complete"]
    with ActivationCache(path) as cache:
        assert cache.epochs == [2]
    cache_activations(run, epochs=[2], subsets=["test"], rebuild=True, progress=False)  # same second: no overwrite
    assert len(list(path.parent.glob("activations.stale-*.h5"))) == 2


def test_corrupt_and_foreign_files_raise_data_file_errors_and_stay_untouched(run):
    path = run.path / "activations.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 10)
    for attempt in (lambda: ActivationCache(path), lambda: cache_activations(run, progress=False)):
        with pytest.raises(DataFileError, match="activations.h5.*not a readable HDF5"):
            attempt()
    assert path.read_bytes().endswith(b"garbage")
    with h5py.File(path, "w") as h5:
        h5["x"] = np.arange(3)
    with pytest.raises(DataFileError, match="not an mftma activation cache"):
        cache_activations(run, progress=False)
    with pytest.raises(DataFileError, match="not found"):
        ActivationCache(run.path / "missing.h5")


def _damage(path, offset):
    """Change four bytes of ``path`` at ``offset`` (not by inverting them: Fletcher-32 takes 0x0000 and 0xFFFF
    words as equal)."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        original = handle.read(4)
        handle.seek(offset)
        handle.write(bytes(byte ^ 0x5A for byte in original))


def _chunk_offset(path, name, index):
    with h5py.File(path, "r") as h5:
        return h5[name].id.get_chunk_info(index).byte_offset


def test_damaged_content_is_a_data_file_error_naming_the_entry_and_the_repair(run):
    path = cache_activations(run, epochs=[1], subsets=["test", "unpermuted"], progress=False)
    repair = rf"damaged\. Run `mftma cache {run.path} --rebuild`"
    _damage(path, _chunk_offset(path, "epoch_0001/fc1/test", 3) + 8)
    with ActivationCache(path) as cache:
        for read in (cache.features, cache.manifolds):
            with pytest.raises(DataFileError, match=rf"entry for epoch 1, layer 'fc1', subset 'test' cannot be read "
                                                    rf"\(.*\); the file is {repair}"):
                read(1, "fc1", "test")
        assert cache.manifolds(1, "fc2", "test")[0].shape == (32, 5)  # the other entries stay readable
    _damage(path, _chunk_offset(path, "samples/unpermuted/labels", 0) + 4)
    with h5py.File(path, "r") as h5:
        header = h5py.h5o.get_info(h5["epoch_0001/logits/test"].id).addr
    _damage(path, header)
    with ActivationCache(path) as cache:
        with pytest.raises(DataFileError, match=f"'unpermuted' sample cannot be read.*{repair}"):
            cache.sample("unpermuted")
        with pytest.raises(DataFileError, match=f"layer 'fc2', subset 'unpermuted' cannot be read.*{repair}"):
            cache.features(1, "fc2", "unpermuted")  # its labels are the damaged sample's
        for read in (cache.entries, lambda: cache.manifolds(1, "logits", "test")):
            with pytest.raises(DataFileError, match=f"layer 'logits', subset 'test' cannot be read.*{repair}"):
                read()


def test_a_full_disk_gives_a_clear_error_and_keeps_complete_entries(run, monkeypatch):
    cache_activations(run, epochs=[0], subsets=["test"], progress=False)
    original = h5py.Dataset.__setitem__

    def full(self, key, value):
        if "epoch_0001" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full)
    with pytest.raises(DataFileError, match="disk full"):
        cache_activations(run, epochs=[0, 1], subsets=["test"], progress=False)
    with ActivationCache(run.path) as cache:
        assert cache.manifolds(0, "fc2", "test")[0].shape == (32, 5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_are_refused_with_the_entry_named(run, bad):
    cache_activations(run, epochs=[0, 1], progress=False)
    before, _, _ = _contents(run.path / "activations.h5")
    state = run.state_dict(2)
    state["blocks.fc2.0.weight"][0, 0] = bad
    torch.save({"epoch": 2, "model": state}, checkpoint_path(run.path, 2))
    with pytest.raises(DataFileError, match=r"epoch 2, layer 'fc2', selection 'kept' \(subsets unpermuted\) hold "
                                            r"NaN or inf.*checkpoints/epoch_0002\.pt"):
        cache_activations(run, progress=False)
    with ActivationCache(run.path) as cache:
        entries = cache.entries()
        assert not entries[(entries["epoch"] == 2) & (entries["layer"] != "input")]["complete"].any()
        with pytest.raises(DataFileError, match="incomplete"):
            cache.features(2, "fc1", "unpermuted")
        assert entries[entries["epoch"] < 2]["complete"].sum() == len(before)
        for key, value in before.items():
            np.testing.assert_array_equal(cache.features(*key)[0], value)


def test_unknown_names_list_the_valid_ones(run):
    with pytest.raises(InputError, match=r"unknown layer.*\['conv9'\].*valid layers: \['input', 'fc1'"):
        cache_activations(run, layers=["conv9"], progress=False)
    with pytest.raises(InputError, match=r"unknown epoch.*\[7\].*\[0, 1, 2\]"):
        cache_activations(run, epochs=[7], progress=False)
    with pytest.raises(InputError, match="subsets"):
        cache_activations(run, subsets=["scrambled"], progress=False)
    cache_activations(run, epochs=[0], layers=["fc1"], subsets=["test"], progress=False)
    with ActivationCache(run.path) as cache:
        for kind, call in [("epoch", lambda: cache.manifolds(5, "fc1", "test")),
                           ("layer", lambda: cache.manifolds(0, "conv1", "test")),
                           ("subset", lambda: cache.features(0, "fc1", "permuted"))]:
            with pytest.raises(InputError, match=f"unknown {kind}.*valid {kind}s"):
                call()


def test_cli_help_and_run(run, monkeypatch, capsys):
    parser = argparse.ArgumentParser(prog="mftma")
    cache_cli.register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["cache", "--help"])
    help_text = capsys.readouterr().out
    for option in ("--epochs", "--layers", "--subsets", "--M", "--P", "--projection-dim", "--pool", "--dtype",
                   "--rebuild"):
        assert option in help_text
    args = parser.parse_args(["cache", str(run.path), "--epochs", "1", "--subsets", "test", "--no-progress"])
    assert args.func(args) == 0
    assert "4 complete entries, 1 epochs x 4 layers x 1 subsets" in capsys.readouterr().out
