"""A run's settings as frozen dataclasses, read from YAML.

A config file has up to five sections, each optional (missing keys take the defaults below)::

    data:        {name: mnist1d, seed: 0, data_dir: null, options: {}}
    corruption:  {kind: permute, fraction: 0.2, seed: 0}
    model:       {name: cnn1d, width: 1.0, options: {}}
    training:    {epochs: 100, batch_size: 128, optimizer: sgd, lr: 0.05, momentum: 0.9,
                  weight_decay: 0.0, schedule: constant, milestones: [], gamma: 0.1, seed: 0,
                  device: auto, checkpoints: all, log_checkpoints: 30, num_threads: null}
    cache:       {layers: all, subsets: [unpermuted, permuted, restored, shuffled, test], M: 50, P: null,
                  projection_dim: 5000, pool: false, seed: 0, batch_size: 256, projection: gaussian,
                  device: auto, dtype: float32}

Unknown sections or keys are errors, so a typo never silently falls back to a default.
:meth:`RunConfig.settings_hash` identifies the settings that determine the trained weights (as in
open_lth, a changed setting can never reuse another run's directory).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mftma.errors import DataFileError, InputError
from mftma.experiments.corruptions import CORRUPTIONS
from mftma.experiments.datasets import DATASET_NAMES
from mftma.experiments.models import MODEL_NAMES
from mftma.names import SUBSETS

OPTIMIZERS = ("sgd", "adam")
#: Learning-rate schedules, applied per epoch: constant; step (multiply by ``gamma`` at each epoch in
#: ``milestones``); cosine (to 0 at the last epoch); linear (to 0 at the last epoch).
SCHEDULES = ("constant", "step", "cosine", "linear")
#: Random projections of layers wider than ``cache.projection_dim`` (see :mod:`mftma.cache.projection`).
PROJECTIONS = ("gaussian", "sparse")
#: Storage types of cached features: float16 halves the disk and keeps MFTMA and probe results within
#: sampling error (README, "Disk"); values beyond float16's range (65504) are refused.
CACHE_DTYPES = ("float32", "float16")


def _number(value, kind, name, *, minimum=None, allow_none=False):
    """``value`` as ``kind`` (int or float), also from strings like ``"1e-3"`` that YAML leaves as text."""
    if value is None and allow_none:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
        if not math.isfinite(number) or (kind is int and not number.is_integer()):
            raise ValueError
        number = kind(number)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a{'n integer' if kind is int else ' number'}, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {number}")
    return number


def _choice(value, choices, name):
    if value not in choices:
        raise InputError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _device(value, name):
    if not (value in ("auto", "cpu", "cuda") or str(value).startswith("cuda:")):
        raise InputError(f"{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    return value


def _mapping(value, name):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{name} must be a mapping, got {value!r}")
    return dict(value)


@dataclass(frozen=True)
class DataConfig:
    """Which data set: ``load_dataset(name, data_dir=data_dir, seed=seed, **options)``."""

    name: str = "mnist1d"
    seed: int = 0
    data_dir: str | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        _choice(self.name, DATASET_NAMES, "data.name")
        object.__setattr__(self, "seed", _number(self.seed, int, "data.seed", minimum=0))
        object.__setattr__(self, "data_dir", None if self.data_dir is None else str(self.data_dir))
        object.__setattr__(self, "options", _mapping(self.options, "data.options"))


@dataclass(frozen=True)
class CorruptionConfig:
    """How the training set is corrupted: ``corrupt(dataset, kind, fraction, seed)`` (docs/method.md §4.1)."""

    kind: str = "permute"
    fraction: float = 0.2
    seed: int = 0

    def __post_init__(self):
        _choice(self.kind, CORRUPTIONS, "corruption.kind")
        fraction = _number(self.fraction, float, "corruption.fraction")
        if not 0.0 <= fraction <= 1.0:
            raise InputError(f"corruption.fraction (epsilon) must lie in [0, 1], got {fraction}")
        object.__setattr__(self, "fraction", fraction)
        object.__setattr__(self, "seed", _number(self.seed, int, "corruption.seed", minimum=0))


@dataclass(frozen=True)
class ModelConfig:
    """Which network: ``build_model(name, ..., width=width, **options)``."""

    name: str = "cnn1d"
    width: float = 1.0
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        _choice(self.name, MODEL_NAMES, "model.name")
        width = _number(self.width, float, "model.width")
        if width <= 0:
            raise InputError(f"model.width must be positive, got {width}")
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "options", _mapping(self.options, "model.options"))


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings, the checkpoint schedule and where to run.

    ``checkpoints`` is ``"all"`` (every epoch), ``"log"`` (``log_checkpoints`` log-spaced epochs) or a
    list of epochs; epoch 0 (initialisation) and the last epoch are always included. ``device`` ``"auto"``
    picks CUDA when present, else the CPU. ``num_threads`` sets ``torch.set_num_threads`` (null: leave).
    """

    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple = ()
    gamma: float = 0.1
    seed: int = 0
    device: str = "auto"
    checkpoints: Any = "all"
    log_checkpoints: int = 30
    num_threads: int | None = None

    def __post_init__(self):
        set_ = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731
        set_("epochs", _number(self.epochs, int, "training.epochs", minimum=1))
        set_("batch_size", _number(self.batch_size, int, "training.batch_size", minimum=1))
        _choice(self.optimizer, OPTIMIZERS, "training.optimizer")
        set_("lr", _number(self.lr, float, "training.lr", minimum=0.0))
        set_("momentum", _number(self.momentum, float, "training.momentum", minimum=0.0))
        set_("weight_decay", _number(self.weight_decay, float, "training.weight_decay", minimum=0.0))
        _choice(self.schedule, SCHEDULES, "training.schedule")
        if not isinstance(self.milestones, (list, tuple)):
            raise InputError(f"training.milestones must be a list of epochs, got {self.milestones!r}")
        set_("milestones", tuple(_number(m, int, "training.milestones", minimum=1) for m in self.milestones))
        set_("gamma", _number(self.gamma, float, "training.gamma", minimum=0.0))
        set_("seed", _number(self.seed, int, "training.seed", minimum=0))
        _device(self.device, "training.device")
        if isinstance(self.checkpoints, (list, tuple)):
            epochs = (_number(e, int, "training.checkpoints", minimum=0) for e in self.checkpoints)
            set_("checkpoints", tuple(sorted(set(epochs))))
        else:
            _choice(self.checkpoints, ("all", "log"), "training.checkpoints (or a list of epochs)")
        set_("log_checkpoints", _number(self.log_checkpoints, int, "training.log_checkpoints", minimum=2))
        set_("num_threads", _number(self.num_threads, int, "training.num_threads", minimum=1, allow_none=True))


@dataclass(frozen=True)
class CacheConfig:
    """Settings of the activation cache (``mftma cache``).

    ``layers`` is ``"all"`` or a list of analysis-layer names; ``P`` null means all classes; ``pool``
    averages each channel over its spatial positions before the projection to ``projection_dim``;
    ``projection`` is ``gaussian`` (dense) or ``sparse`` (sparse sign, see :mod:`mftma.cache.projection`);
    ``device`` (``auto``: CUDA when present, ``cpu``, ``cuda``, ``cuda:N``) runs the forward pass and
    projection.
    ``dtype`` is the storage type of the features (``float32`` or ``float16``; read back as float32).
    """

    layers: Any = "all"
    subsets: tuple = SUBSETS
    M: int = 50
    P: int | None = None
    projection_dim: int = 5000
    pool: bool = False
    seed: int = 0
    batch_size: int = 256
    projection: str = "gaussian"
    device: str = "auto"
    dtype: str = "float32"

    def __post_init__(self):
        set_ = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731
        if isinstance(self.layers, (list, tuple)):
            set_("layers", tuple(str(layer) for layer in self.layers))
        elif self.layers != "all":
            raise InputError(f"cache.layers must be 'all' or a list of layer names, got {self.layers!r}")
        if not isinstance(self.subsets, (list, tuple)) or not self.subsets:
            raise InputError(f"cache.subsets must be a non-empty list from {list(SUBSETS)}, got {self.subsets!r}")
        set_("subsets", tuple(_choice(s, SUBSETS, "cache.subsets entry") for s in self.subsets))
        set_("M", _number(self.M, int, "cache.M", minimum=2))
        set_("P", _number(self.P, int, "cache.P", minimum=2, allow_none=True))
        set_("projection_dim", _number(self.projection_dim, int, "cache.projection_dim", minimum=1))
        if not isinstance(self.pool, bool):
            raise InputError(f"cache.pool must be true or false, got {self.pool!r}")
        set_("seed", _number(self.seed, int, "cache.seed", minimum=0))
        set_("batch_size", _number(self.batch_size, int, "cache.batch_size", minimum=1))
        _choice(self.projection, PROJECTIONS, "cache.projection")
        _device(self.device, "cache.device")
        _choice(self.dtype, CACHE_DTYPES, "cache.dtype")


_SECTIONS = {
    "data": DataConfig,
    "corruption": CorruptionConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "cache": CacheConfig,
}
#: Training settings that do not change the weights, hence are left out of the settings hash.
_UNHASHED_TRAINING = ("device", "num_threads", "checkpoints", "log_checkpoints")


@dataclass(frozen=True)
class RunConfig:
    """All settings of one run; see the module docstring for the YAML layout."""

    data: DataConfig = field(default_factory=DataConfig)
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)

    @classmethod
    def from_dict(cls, settings: dict) -> RunConfig:
        """Build from a nested mapping; unknown sections or keys raise :class:`InputError` naming them."""
        settings = _mapping(settings, "the config")
        unknown = sorted(set(settings) - set(_SECTIONS))
        if unknown:
            raise InputError(f"unknown config section(s) {unknown}; expected some of {list(_SECTIONS)}")
        sections = {}
        for name, section in _SECTIONS.items():
            values = _mapping(settings.get(name), f"config section {name!r}")
            allowed = [f.name for f in dataclasses.fields(section)]
            unknown = sorted(set(values) - set(allowed))
            if unknown:
                raise InputError(f"unknown key(s) {unknown} in config section {name!r}; allowed: {allowed}")
            sections[name] = section(**values)
        return cls(**sections)

    def to_dict(self) -> dict:
        """Plain nested dict (lists, not tuples) that ``yaml.safe_dump`` writes and ``from_dict`` reads."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **sections: dict) -> RunConfig:
        """A copy with some keys changed, e.g. ``config.replace(training={"epochs": 5})``."""
        merged = self.to_dict()
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        return RunConfig.from_dict(merged)

    def settings_hash(self) -> str:
        """Stable 16-hex-digit hash of the settings that determine the trained weights.

        Covers data, corruption, model and training, except the device, thread count and checkpoint
        schedule (and the cache section), which do not change the weights.
        """
        settings = self.to_dict()
        del settings["cache"]
        for key in _UNHASHED_TRAINING:
            del settings["training"][key]
        text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_names() -> list[str]:
    """Names of the example configs shipped with mftma (usable in place of a path)."""
    return sorted(path.name[: -len(".yaml")] for path in _packaged().iterdir() if path.name.endswith(".yaml"))


def config_path(path_or_name: str | Path) -> Path:
    """The file of a YAML path, or of a shipped config name (:func:`config_names`) when no such path exists."""
    path = Path(path_or_name)
    if not path.exists() and str(path_or_name) in config_names():
        path = Path(str(_packaged() / f"{path_or_name}.yaml"))
    return path


def load_config(path_or_name: str | Path) -> RunConfig:
    """Read a run config from a YAML file, or one of :func:`config_names` (e.g. ``"mnist1d"``).

    Raises
    ------
    DataFileError
        The file is missing, unreadable or not valid YAML.
    InputError
        The settings are invalid (unknown keys, values out of range).
    """
    path = config_path(path_or_name)
    try:
        settings = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DataFileError(
            f"config file {str(path_or_name)!r} not found (built-in configs: {config_names()})"
        ) from None
    except (OSError, yaml.YAMLError) as error:
        raise DataFileError(f"cannot read config file {str(path)!r}: {error}") from None
    try:
        return RunConfig.from_dict(settings)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


def _packaged():
    return resources.files("mftma") / "configs"
