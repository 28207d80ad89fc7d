"""Plumbing shared by the flawed-model experiments: their configs, runs, tables and Dask cluster.

A flawed config is a run config (see :mod:`mftma.experiments.config`) with one more section, ``flawed``,
holding the keyword settings of the experiment function; unknown keys are errors. The built-in ones are
``mftma/configs/flawed_*.yaml`` and can be named instead of given as a path.
"""
from __future__ import annotations

import contextlib
import inspect
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from mftma.errors import DataFileError, InputError
from mftma.atomic import atomic_write
from mftma.experiments.config import RunConfig, config_path

SECTION = "flawed"
RUNS_DIRNAME = "runs"
#: Parameters of an experiment function that are not settings of its ``flawed`` section.
_NOT_SETTINGS = ("config", "out", "progress", "scheduler")


def flawed_config_names() -> list[str]:
    """Names of the flawed configs shipped with mftma (``flawed_*.yaml`` in ``mftma/configs``)."""
    folder = resources.files("mftma") / "configs"
    return sorted(path.name[:-len(".yaml")] for path in folder.iterdir()
                  if path.name.startswith(f"{SECTION}_") and path.name.endswith(".yaml"))


def load_experiment(path_or_name) -> tuple[RunConfig, dict]:
    """Read a flawed config: ``(run config, settings of the flawed section)``.

    Raises
    ------
    DataFileError
        The file is missing, unreadable or not valid YAML.
    InputError
        The run settings are invalid, or the ``flawed`` section is not a mapping.
    """
    path = config_path(path_or_name)
    try:
        settings = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DataFileError(f"flawed config {str(path_or_name)!r} not found "
                            f"(built-in: {flawed_config_names()})") from None
    except (OSError, yaml.YAMLError) as error:
        raise DataFileError(f"cannot read flawed config {str(path)!r}: {error}") from None
    if not isinstance(settings, dict):
        raise InputError(f"{path}: a flawed config must be a mapping of sections, got {type(settings).__name__}")
    flawed = settings.pop(SECTION, None) or {}
    if not isinstance(flawed, dict):
        raise InputError(f"{path}: the {SECTION!r} section must be a mapping, got {flawed!r}")
    try:
        return RunConfig.from_dict(settings), flawed
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


def check_settings(function, settings: dict) -> dict:
    """``settings`` if every key is a keyword setting of ``function``; else an :class:`InputError` naming them."""
    allowed = [name for name in inspect.signature(function).parameters if name not in _NOT_SETTINGS]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in the {SECTION!r} section; allowed: {allowed}")
    return dict(settings)


def check_samples(config, subsets=None) -> None:
    """Draw the cache's subset samples from the settings alone, so that too small a subset fails before training.

    Raises
    ------
    InputError
        A class has fewer than ``cache.M`` examples in a subset (see
        :func:`~mftma.experiments.subsets.sample_subsets`).
    """
    from mftma.experiments.run import load_training_data
    from mftma.experiments.subsets import available_subsets, sample_subsets

    dataset, record = load_training_data(config)
    cache = config.cache
    present = available_subsets(record)
    sample_subsets(record, dataset.y_test.numpy(), dataset.num_classes, M=cache.M, P=cache.P, seed=cache.seed,
                   subsets=[subset for subset in (subsets or cache.subsets) if subset in present])


def train_run(config: RunConfig, out, name: str, progress: bool):
    """Train (or resume, or reuse) the run ``OUT/runs/<name>`` and return it as a :class:`Run`."""
    from mftma.experiments.training import train

    return train(config, Path(out) / RUNS_DIRNAME / name, progress=progress)


def write_table(frame: pd.DataFrame, path) -> Path:
    """Write ``frame`` to the CSV file ``path`` atomically and return the path."""
    path = Path(path)
    atomic_write(path, lambda temporary: frame.to_csv(temporary, index=False))
    return path


def read_table(out, name: str) -> pd.DataFrame:
    """The table ``OUT/<name>.csv`` written by an experiment.

    Raises
    ------
    DataFileError
        The table is missing or unreadable.
    """
    path = Path(out) / f"{name}.csv"
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DataFileError(f"{path} not found; run the experiment (`mftma flawed ...`) first") from None
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path} is corrupt: {error}") from None


@contextlib.contextmanager
def local_scheduler(scheduler: str | None, n_workers: int = 2, processes: bool = True):
    """The address of ``scheduler``, or of a local Dask cluster started for the whole experiment."""
    if scheduler is not None:
        yield scheduler
        return
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address
