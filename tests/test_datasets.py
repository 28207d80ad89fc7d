import pickle
import random

import numpy as np
import pytest
import torch

from mftma.errors import DataFileError, InputError
from mftma.experiments.concepts import concept_values
from mftma.experiments.datasets import DATASET_NAMES, Dataset, load_dataset, read_cifar

IMAGES_PER_CLASS = 2


def _dump(path, content):
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)


def _batch(num_classes, label_key, rng):
    labels = np.repeat(np.arange(num_classes), IMAGES_PER_CLASS)
    data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return {b"batch_label": b"tiny", label_key.encode(): labels.tolist(), b"data": data,
            b"filenames": [b"x.png"] * len(labels)}


def write_tiny_cifar10(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _dump(folder / name, _batch(10, "labels", rng))
    _dump(folder / "batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072})
    return folder


def write_tiny_cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        batch = _batch(100, "fine_labels", rng)
        batch[b"coarse_labels"] = [label // 5 for label in batch[b"fine_labels"]]
        _dump(folder / name, batch)
    _dump(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return folder


def test_mnist1d_shapes_determinism_and_global_rng_untouched():
    np.random.seed(123)
    random.seed(123)
    expected_numpy, expected_python = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    data = load_dataset("mnist1d", seed=3, n_train=95, n_test=23)
    assert (np.random.random(), random.random()) == (expected_numpy, expected_python)
    assert data.input_shape == (1, 40) and data.num_classes == 10 and len(data.class_names) == 10
    assert data.x_train.shape == (95, 1, 40) and data.x_test.shape == (23, 1, 40)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert set(data.y_train.tolist()) <= set(range(10))
    again = load_dataset("mnist1d", seed=3, n_train=95, n_test=23)
    assert torch.equal(data.x_train, again.x_train) and torch.equal(data.y_test, again.y_test)
    other = load_dataset("mnist1d", seed=4, n_train=95, n_test=23)
    assert not torch.equal(data.x_train, other.x_train)


def test_digits_is_a_stratified_standardized_split():
    data = load_dataset("digits", seed=0)
    assert data.input_shape == (1, 8, 8)
    assert len(data.y_train) + len(data.y_test) == 1797
    assert abs(len(data.y_test) / 1797 - 0.25) < 0.01
    train_share = np.bincount(data.y_train.numpy()) / len(data.y_train)
    test_share = np.bincount(data.y_test.numpy()) / len(data.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std()) - 1) < 1e-3
    assert not torch.equal(load_dataset("digits", seed=1).y_test, data.y_test)


def test_unknown_names_and_options_are_input_errors():
    with pytest.raises(InputError, match="valid names: mnist1d, digits, textures, cifar10, cifar100"):
        load_dataset("mnist")
    with pytest.raises(InputError, match="unknown option.*n_samples.*valid options: n_train, n_test"):
        load_dataset("mnist1d", n_samples=10)
    with pytest.raises(InputError, match="n_train"):
        load_dataset("mnist1d", n_train=0)
    with pytest.raises(InputError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.5)
    assert DATASET_NAMES == ("mnist1d", "digits", "textures", "cifar10", "cifar100")


@pytest.mark.parametrize("name, writer, classes", [("cifar10", write_tiny_cifar10, 10),
                                                   ("cifar100", write_tiny_cifar100, 100)])
def test_cifar_reads_tiny_files_from_folder_or_parent(tmp_path, name, writer, classes):
    folder = writer(tmp_path)
    data = load_dataset(name, data_dir=tmp_path)
    batches = 5 if name == "cifar10" else 1
    assert data.x_train.shape == (batches * classes * IMAGES_PER_CLASS, 3, 32, 32)
    assert data.x_test.shape == (classes * IMAGES_PER_CLASS, 3, 32, 32)
    assert data.num_classes == classes and data.class_names[1] in ("class1", "fine1")
    np.testing.assert_allclose(data.x_train.mean(dim=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(dim=(0, 2, 3)), 1, atol=1e-3)
    assert torch.equal(load_dataset(name, data_dir=folder).x_test, data.x_test)
    assert data.concepts_train is None
    with_concepts = load_dataset(name, data_dir=folder, concepts=True)
    assert with_concepts.concepts_test["contrast"].shape == (len(data.y_test),)
    x_train, y_train, _, _, _ = read_cifar(name, folder)
    assert x_train.dtype == np.uint8 and np.array_equal(y_train, data.y_train.numpy())
    np.testing.assert_array_equal(with_concepts.concepts_train["red"],
                                  concept_values(x_train.transpose(0, 2, 3, 1))["red"])
    # Channel-first layout: the first 1024 values of a row are the red plane.
    first = pickle.load(open(folder / ("data_batch_1" if name == "cifar10" else "train"), "rb"), encoding="bytes")
    assert np.array_equal(x_train[0, 0].ravel(), first[b"data"][0, :1024])


def test_cifar_missing_folder_and_files_are_named(tmp_path):
    with pytest.raises(DataFileError, match="needs data_dir"):
        load_dataset("cifar10")
    with pytest.raises(DataFileError, match="not found"):
        load_dataset("cifar10", data_dir=tmp_path / "nowhere")
    folder = write_tiny_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataFileError, match="missing: .*data_batch_3"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_hostile_or_malformed_pickles_are_refused(tmp_path):
    folder = write_tiny_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Hostile:
        def __reduce__(self):
            return open, (str(marker), "w")

    _dump(folder / "test_batch", {b"data": Hostile()})
    with pytest.raises(DataFileError, match="refusing to load io.open"):
        load_dataset("cifar10", data_dir=folder)
    assert not marker.exists()
    _dump(folder / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataFileError, match=r"test_batch: 'data' must be a uint8 array of shape \(n, 3072\)"):
        load_dataset("cifar10", data_dir=folder)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(DataFileError, match=r"labels must be integers in \[0, 10\)"):
        load_dataset("cifar10", data_dir=folder)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataFileError, match="not a CIFAR python-pickle file"):
        load_dataset("cifar10", data_dir=folder)


def test_dataset_save_load_round_trip_and_validation(tmp_path):
    data = load_dataset("mnist1d", n_train=30, n_test=10)
    data = Dataset(**{**data.__dict__, "concepts_train": {"red": np.arange(30.0)}})
    data.save(tmp_path / "data.npz")
    loaded = Dataset.load(tmp_path / "data.npz")
    assert loaded.name == "mnist1d" and loaded.class_names == data.class_names
    assert torch.equal(loaded.x_train, data.x_train) and torch.equal(loaded.y_test, data.y_test)
    assert np.array_equal(loaded.concepts_train["red"], np.arange(30.0)) and loaded.concepts_test is None
    with pytest.raises(DataFileError, match="not found"):
        Dataset.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(DataFileError, match="not a readable data set"):
        Dataset.load(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="labels outside"):
        Dataset("x", data.x_train, data.y_train + 10, data.x_test, data.y_test, 10, data.class_names)
    with pytest.raises(InputError, match="class names"):
        Dataset("x", data.x_train, data.y_train, data.x_test, data.y_test, 3, data.class_names)


def _script(name):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "data_scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"data_scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_data_scripts_generate_check_and_corrupt(tmp_path, capsys):
    from mftma.experiments.corruptions import CorruptionRecord

    assert _script("generate_mnist1d")(["--out", str(tmp_path / "m.npz"), "--n-train", "50", "--n-test", "10"]) == 0
    assert Dataset.load(tmp_path / "m.npz").x_train.shape == (50, 1, 40)
    assert _script("corrupt_dataset")([str(tmp_path / "m.npz"), "--fraction", "0.4", "--out", str(tmp_path / "c.npz"),
                                       "--record", str(tmp_path / "r.npz")]) == 0
    record = CorruptionRecord.load(tmp_path / "r.npz")
    assert record.permuted_mask.sum() == 20
    assert np.array_equal(Dataset.load(tmp_path / "c.npz").y_train.numpy(), record.train_labels)
    assert _script("generate_textures")(["--out", str(tmp_path / "t.npz"), "--n-train", "32", "--n-test", "16",
                                         "--preview", str(tmp_path / "p.png"), "--per-class", "2"]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG" and Dataset.load(tmp_path / "t.npz").concepts_test
    write_tiny_cifar10(tmp_path)
    assert _script("check_cifar")(["--data-dir", str(tmp_path)]) == 0
    assert "cifar10: OK (10 classes" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        _script("check_cifar")(["--data-dir", str(tmp_path), "--name", "cifar100"])
    assert exit_info.value.code == 1 and "CIFAR file missing" in capsys.readouterr().err
