"""Data sets behind one loader: ``load_dataset(name, data_dir=None, seed=0, **options) -> Dataset``.

=============  ==============  =======  ==========================================================================
name           input shape     classes  source
=============  ==============  =======  ==========================================================================
``mnist1d``    (1, 40)         10       the ``mnist1d`` package's local generator (never its download path)
``digits``     (1, 8, 8)       10       scikit-learn's 8x8 digits (shipped with scikit-learn), stratified split
``textures``   (3, 32, 32)     16       generated colored textures with concept values (:mod:`.textures`)
``cifar10``    (3, 32, 32)     10       the python-pickle batches a user downloaded (``data_dir``)
``cifar100``   (3, 32, 32)     100      the python-pickle files a user downloaded (``data_dir``), fine labels
=============  ==============  =======  ==========================================================================

Inputs are float32 tensors, standardized with statistics of the training split only (``mnist1d`` comes
standardized from its generator); labels are int64 tensors of the true classes. Everything is deterministic
given ``seed``, which has no effect on the CIFAR files.
"""
from __future__ import annotations

import codecs
import contextlib
import functools
import inspect
import math
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mftma.errors import DataFileError, InputError
from mftma.experiments.npz import load_npz, save_npz

DATASET_NAMES = ("mnist1d", "digits", "textures", "cifar10", "cifar100")

_CONCEPT_PREFIX = {"train": "concepts_train__", "test": "concepts_test__"}
_ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test data set.

    Attributes
    ----------
    name : str
        The data set's name (one of :data:`DATASET_NAMES` for loaded data).
    x_train, x_test : torch.Tensor
        float32 inputs shaped ``(n, *input_shape)``.
    y_train, y_test : torch.Tensor
        int64 labels in ``[0, num_classes)``.
    num_classes : int
        Number of classes.
    class_names : tuple of str
        One readable name per class.
    concepts_train, concepts_test : dict of str to ndarray, optional
        Concept name -> one value per example (``textures``; CIFAR on request; see :mod:`.concepts`).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    concepts_train: dict[str, np.ndarray] | None = None
    concepts_test: dict[str, np.ndarray] | None = None

    def __post_init__(self):
        if len(self.class_names) != self.num_classes:
            raise InputError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise InputError(f"x_{split} must be float32 and y_{split} int64, got {x.dtype} and {y.dtype}")
            if y.ndim != 1 or len(x) != len(y):
                raise InputError(f"x_{split} has {len(x)} examples but y_{split} has shape {tuple(y.shape)}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise InputError(f"y_{split} holds labels outside [0, {self.num_classes})")
            concepts = getattr(self, f"concepts_{split}")
            if concepts is not None and any(len(values) != len(y) for values in concepts.values()):
                raise InputError(f"concepts_{split} must hold one value per example ({len(y)})")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise InputError(f"train inputs {tuple(self.x_train.shape[1:])} and test inputs "
                             f"{tuple(self.x_test.shape[1:])} differ in shape")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(1, 40)`` or ``(3, 32, 32)``."""
        return tuple(self.x_train.shape[1:])

    def save(self, path: str | Path) -> None:
        """Write the data set to an ``.npz`` file (atomically, no pickle); read it back with :meth:`load`."""
        arrays = {key: getattr(self, key).numpy() for key in _ARRAY_KEYS}
        arrays.update(name=np.str_(self.name), num_classes=np.int64(self.num_classes),
                      class_names=np.array(self.class_names, dtype=str))
        for split, prefix in _CONCEPT_PREFIX.items():
            for concept, values in (getattr(self, f"concepts_{split}") or {}).items():
                arrays[prefix + concept] = values
        save_npz(path, arrays)

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read a data set written by :meth:`save`.

        Raises
        ------
        DataFileError
            The file is missing, unreadable or not a saved data set.
        """
        arrays = load_npz(path, (*_ARRAY_KEYS, "name", "num_classes", "class_names"), "data set")
        concepts = {
            split: {key[len(prefix):]: arrays[key] for key in arrays if key.startswith(prefix)} or None
            for split, prefix in _CONCEPT_PREFIX.items()
        }
        try:
            return cls(name=str(arrays["name"]), **{key: torch.from_numpy(arrays[key]) for key in _ARRAY_KEYS},
                       num_classes=int(arrays["num_classes"]), class_names=tuple(arrays["class_names"].tolist()),
                       concepts_train=concepts["train"], concepts_test=concepts["test"])
        except (InputError, TypeError) as error:
            raise DataFileError(f"{path} is not a valid data set: {error}") from None


def load_dataset(name: str, *, data_dir: str | Path | None = None, seed: int = 0, **options) -> Dataset:
    """Load or generate a data set by name.

    Parameters
    ----------
    name : str
        One of :data:`DATASET_NAMES`.
    data_dir : str or Path, optional
        Folder of downloaded files (``cifar10``: ``cifar-10-batches-py`` or its parent; ``cifar100``:
        ``cifar-100-python`` or its parent). Not used by the generated data sets.
    seed : int
        Seed of the generator (``mnist1d``, ``textures``) or of the train/test split (``digits``).
    **options
        Per data set: ``mnist1d``: ``n_train=4000, n_test=1000``; ``digits``: ``test_fraction=0.25``;
        ``textures``: ``n_train=6400, n_test=1600``; CIFAR: ``concepts=False`` (True: also compute the
        concept values of every image, as ``textures`` always does).

    Returns
    -------
    Dataset

    Raises
    ------
    InputError
        Unknown name or option, or an invalid option value.
    DataFileError
        CIFAR files missing, corrupt or not in the expected format.

    Examples
    --------
    >>> data = load_dataset("digits", seed=0)
    >>> data.input_shape, data.num_classes
    ((1, 8, 8), 10)
    """
    if name not in _LOADERS:
        raise InputError(f"unknown data set {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    loader = _LOADERS[name]
    allowed = [parameter for parameter in inspect.signature(loader).parameters if parameter not in ("seed", "data_dir")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)} for data set {name!r}; "
                         f"valid options: {', '.join(allowed) or 'none'}")
    return loader(seed=seed, data_dir=data_dir, **options)


def _count(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def standardize(x_train: np.ndarray, x_test: np.ndarray, axes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Subtract the training mean and divide by the training standard deviation over ``axes``.

    Returns float32 tensors (statistics are accumulated in float64). ``axes=(0, 2, 3)`` standardizes each
    channel of ``(n, C, H, W)`` images; any fixed scaling of the raw values (e.g. to [0, 1]) cancels out.
    """
    x_train, x_test = (np.array(x, dtype=np.float32) for x in (x_train, x_test))  # own copies, changed in place
    mean = x_train.mean(axis=axes, dtype=np.float64, keepdims=True).astype(np.float32)
    x_train -= mean
    x_test -= mean
    std = np.sqrt(np.square(x_train).mean(axis=axes, dtype=np.float64, keepdims=True)).astype(np.float32)
    std[std == 0] = 1.0
    x_train /= std
    x_test /= std
    return torch.from_numpy(x_train), torch.from_numpy(x_test)


def _labels(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.int64))


@contextlib.contextmanager
def _global_rng_preserved():
    """Restore Python's and numpy's global random state afterwards (for generators that reseed them)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _load_mnist1d(seed: int, data_dir, n_train: int = 4000, n_test: int = 1000) -> Dataset:
    """MNIST-1D from ``mnist1d.data.make_dataset`` with its default settings and ``seed``.

    The generator draws ``n_train + n_test`` examples (rounded up to a multiple of 10 and then cut back)
    in shuffled order and standardizes them; the first ``n_train`` are the training split. With the
    defaults this is the package's own 4000/1000 split.
    """
    n_train, n_test = _count(n_train, "n_train"), _count(n_test, "n_test")
    total = n_train + n_test
    x, y = (array.copy() for array in _generate_mnist1d(seed, 10 * math.ceil(total / 10)))
    x, y = x[:total, None, :], y[:total]
    return Dataset("mnist1d", torch.from_numpy(x[:n_train]), _labels(y[:n_train]), torch.from_numpy(x[n_train:]),
                   _labels(y[n_train:]), 10, tuple(str(digit) for digit in range(10)))


@functools.lru_cache(maxsize=4)
def _generate_mnist1d(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` MNIST-1D examples (float32 inputs, labels) in the generator's order, both splits joined.

    Kept for the process's next calls (generating 5000 examples takes seconds, and a run's stages
    load the same data); callers get copies.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = count
    args.seed = seed
    with _global_rng_preserved():
        generated = make_dataset(args)
    x = np.concatenate([generated["x"], generated["x_test"]]).astype(np.float32)
    y = np.concatenate([generated["y"], generated["y_test"]])
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _load_digits(seed: int, data_dir, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's 8x8 digits (values 0-16), split stratified by class, standardized with one mean and std."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not isinstance(test_fraction, (float, int)) or not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    images, labels = load_digits(return_X_y=True)
    images = images.reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(images, labels, test_size=test_fraction,
                                                        stratify=labels, random_state=seed)
    x_train, x_test = standardize(x_train, x_test, axes=(0, 1, 2, 3))
    return Dataset("digits", x_train, _labels(y_train), x_test, _labels(y_test), 10,
                   tuple(str(digit) for digit in range(10)))


def _load_textures(seed: int, data_dir, n_train: int = 6400, n_test: int = 1600) -> Dataset:
    """Generated colored textures (:func:`.textures.make_textures`); the first ``n_train`` are for training."""
    from mftma.experiments.textures import make_textures

    n_train, n_test = _count(n_train, "n_train"), _count(n_test, "n_test")
    return textures_dataset(*make_textures(n_train + n_test, seed=seed), n_train=n_train)


def textures_dataset(images: np.ndarray, labels: np.ndarray, n_train: int) -> Dataset:
    """The ``textures`` data set of generated images: concept values measured, inputs standardized per channel.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, 32, 32, 3)
        Images from :func:`.textures.make_textures`.
    labels : ndarray of int, shape (n,)
        Their classes.
    n_train : int
        The first ``n_train`` images form the training split, the rest the test split.
    """
    from mftma.experiments.textures import CLASS_NAMES

    channels_first = images.transpose(0, 3, 1, 2)
    x_train, x_test = standardize(channels_first[:n_train], channels_first[n_train:], axes=(0, 2, 3))
    return Dataset("textures", x_train, _labels(labels[:n_train]), x_test, _labels(labels[n_train:]),
                   len(CLASS_NAMES), CLASS_NAMES, concepts_train=_image_concepts(channels_first[:n_train]),
                   concepts_test=_image_concepts(channels_first[n_train:]))


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int


_CIFAR_LAYOUTS = {
    "cifar10": _CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                            "batches.meta", "labels", "label_names", 10),
    "cifar100": _CifarLayout("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names", 100),
}
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only builtin containers, strings, numbers and plain numpy arrays.

    Any other global (a function or class a hostile file could use to run code) is refused.
    """

    _RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array reconstructor, whatever module holds it
    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _read_cifar_pickle(path: Path) -> dict[str, object]:
    """A CIFAR pickle as a dict with ``str`` keys, read with :class:`_RestrictedUnpickler`."""
    if not path.is_file():
        raise DataFileError(f"CIFAR file missing: {path} (download the python version from {_CIFAR_URL} "
                            "and point data_dir at the extracted folder or its parent)")
    try:
        with open(path, "rb") as handle:
            content = _RestrictedUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataFileError(f"{path} is not a CIFAR python-pickle file: {error}") from None
    if not isinstance(content, dict):
        raise DataFileError(f"{path} is not a CIFAR python-pickle file: it holds a {type(content).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()}


def _read_cifar_split(folder: Path, files: tuple[str, ...], layout: _CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(n, 3, 32, 32)`` and int64 labels of the given batch files, checked."""
    images, labels = [], []
    for file in files:
        batch = _read_cifar_pickle(folder / file)
        data, batch_labels = batch.get("data"), batch.get(layout.label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataFileError(f"{folder / file}: 'data' must be a uint8 array of shape (n, 3072)")
        if batch_labels is None or len(batch_labels) != len(data):
            raise DataFileError(f"{folder / file}: {layout.label_key!r} must hold one label per image ({len(data)})")
        batch_labels = np.asarray(batch_labels)
        if batch_labels.dtype.kind not in "iu" or batch_labels.min() < 0 or batch_labels.max() >= layout.num_classes:
            raise DataFileError(f"{folder / file}: labels must be integers in [0, {layout.num_classes})")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def cifar_folder(name: str, data_dir: str | Path | None) -> Path:
    """The folder holding ``name``'s batch files: ``data_dir`` itself or its standard subfolder.

    Raises
    ------
    DataFileError
        ``data_dir`` is not given or does not exist.
    """
    layout = _CIFAR_LAYOUTS[name]
    if data_dir is None:
        raise DataFileError(f"{name} needs data_dir (--data-dir): the folder {layout.folder} downloaded from "
                            f"{_CIFAR_URL}, or its parent")
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise DataFileError(f"{name} data folder not found: {data_dir}")
    return data_dir / layout.folder if (data_dir / layout.folder).is_dir() else data_dir


def read_cifar(name: str, data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                 tuple[str, ...]]:
    """Raw CIFAR arrays: uint8 train/test images ``(n, 3, 32, 32)``, int64 labels and the class names.

    Raises
    ------
    DataFileError
        A file is missing (named in the message), unreadable, hostile or has wrong shapes or labels.
    """
    layout = _CIFAR_LAYOUTS[name]
    folder = cifar_folder(name, data_dir)
    meta = _read_cifar_pickle(folder / layout.meta_file)
    names = meta.get(layout.names_key)
    if not isinstance(names, list) or len(names) != layout.num_classes:
        raise DataFileError(f"{folder / layout.meta_file}: {layout.names_key!r} must list {layout.num_classes} names")
    names = tuple(item.decode() if isinstance(item, bytes) else str(item) for item in names)
    x_train, y_train = _read_cifar_split(folder, layout.train_files, layout)
    x_test, y_test = _read_cifar_split(folder, layout.test_files, layout)
    return x_train, y_train, x_test, y_test, names


def _cifar_loader(name: str) -> Callable[..., Dataset]:
    def load(seed: int, data_dir, concepts: bool = False) -> Dataset:
        if not isinstance(concepts, bool):
            raise InputError(f"concepts must be true or false, got {concepts!r}")
        x_train, y_train, x_test, y_test, names = read_cifar(name, data_dir)
        concepts_train, concepts_test = (_image_concepts(x) if concepts else None for x in (x_train, x_test))
        x_train, x_test = standardize(x_train, x_test, axes=(0, 2, 3))
        return Dataset(name, x_train, _labels(y_train), x_test, _labels(y_test), len(names), names,
                       concepts_train=concepts_train, concepts_test=concepts_test)

    load.__doc__ = (f"{name} from the downloaded python-pickle files, standardized per channel; with "
                    "``concepts=True`` also the concept values of every image (:mod:`.concepts`).")
    return load


def _image_concepts(images: np.ndarray) -> dict[str, np.ndarray]:
    """Concept values of uint8 images shaped ``(n, 3, H, W)``."""
    from mftma.experiments.concepts import concept_values

    return concept_values(images.transpose(0, 2, 3, 1))


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "mnist1d": _load_mnist1d,
    "digits": _load_digits,
    "textures": _load_textures,
    "cifar10": _cifar_loader("cifar10"),
    "cifar100": _cifar_loader("cifar100"),
}
