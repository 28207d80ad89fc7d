"""``Run``: the one reader of a run directory written by :func:`mftma.experiments.training.train`.

Layout (see ``docs/ARCHITECTURE.md``)::

    RUN_DIR/config.yaml                the settings (RunConfig.to_dict, YAML)
    RUN_DIR/run.json                   metadata: settings hash, data set, shapes, corruption, versions, status
    RUN_DIR/corruption.npz             train_labels, true_labels, permuted_mask (CorruptionRecord)
    RUN_DIR/checkpoints/epoch_XXXX.pt  {"epoch", "model"} for each scheduled epoch (0 = initialisation)
                                       and for the epoch of best test accuracy so far
    RUN_DIR/checkpoints/resume.pt      state to continue training after the last complete epoch
    RUN_DIR/metrics.csv                one row per epoch
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from mftma.errors import DataFileError, InputError
from mftma.experiments import checkpoints
from mftma.experiments.config import RunConfig
from mftma.experiments.models import LayeredModel, build_model

RUN_FORMAT = "mftma-run"
CONFIG_FILE = "config.yaml"
METADATA_FILE = "run.json"
CORRUPTION_FILE = "corruption.npz"
METRICS_FILE = "metrics.csv"


class Run:
    """A training run on disk: its settings, checkpoints, metrics, data and corruption record.

    Parameters
    ----------
    run_dir : str or Path
        A directory written by ``mftma train``.

    Attributes
    ----------
    path : Path
    config : RunConfig
    metadata : dict
        The content of ``run.json`` (``settings_hash``, ``dataset``, ``num_classes``, ``input_shape``,
        ``corruption``, ``epsilon``, ``seeds``, ``model``, ``num_parameters``, ``versions``, ``status``...).

    Raises
    ------
    DataFileError
        The directory is missing, not an mftma run directory, or its config/metadata are corrupt.

    Examples
    --------
    ``run_dir`` is a trained run directory (here: the shipped ``tiny`` config's run).

    >>> run = Run(run_dir)
    >>> run.checkpoint_epochs(), run.best_epoch()
    ([0, 1, 2, 3, 4], 4)
    >>> model = run.load_model(run.best_epoch())
    >>> list(model.blocks), model.training
    (['fc1', 'fc2', 'logits'], False)
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir)
        self.metadata = _read_metadata(self.path)
        try:
            self.config = RunConfig.from_dict(yaml.safe_load((self.path / CONFIG_FILE).read_text()))
        except (OSError, yaml.YAMLError, InputError) as error:
            raise DataFileError(f"{self.path / CONFIG_FILE} is missing or invalid: {error}") from None
        if self.config.settings_hash() != self.metadata.get("settings_hash"):
            raise DataFileError(
                f"{self.path}: config.yaml does not match the settings hash in run.json "
                f"({self.config.settings_hash()} != {self.metadata.get('settings_hash')}); was it edited?"
            )
        self._data = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def checkpoint_epochs(self) -> list[int]:
        """Epochs with a complete checkpoint, ascending (0 is the initialisation)."""
        return checkpoints.checkpoint_epochs(self.path)

    def state_dict(self, epoch: int) -> dict[str, torch.Tensor]:
        """The model's state dict at ``epoch`` (on the CPU)."""
        if epoch not in self.checkpoint_epochs():
            raise DataFileError(
                f"{self.path} has no checkpoint for epoch {epoch}; available: {self.checkpoint_epochs()}"
            )
        path = checkpoints.checkpoint_path(self.path, epoch)
        content = checkpoints.load_torch_file(path)
        if not isinstance(content, dict) or "model" not in content:
            raise DataFileError(f"checkpoint file {path} has no model state")
        return content["model"]

    def build_model(self) -> LayeredModel:
        """A freshly initialised network of this run's architecture (seeded as the run's epoch 0)."""
        model = self.config.model
        return build_model(
            model.name,
            self.metadata["input_shape"],
            self.metadata["num_classes"],
            width=model.width,
            seed=self.config.training.seed,
            **model.options,
        )

    def load_model(self, epoch: int) -> LayeredModel:
        """The network at ``epoch``, on the CPU, in eval mode."""
        model = self.build_model()
        model.load_state_dict(self.state_dict(epoch))
        return model.eval()

    def weights_hash(self, epoch: int) -> str:
        """SHA-256 (hex) of the weights at ``epoch``: names, dtypes, shapes and values of the state dict."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict(epoch).items()):
            array = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{array.dtype}|{tuple(array.shape)}|".encode())
            digest.update(array.reshape(-1).view(torch.uint8).numpy().tobytes() if array.numel() else b"")
        return digest.hexdigest()

    def dataset(self):
        """The run's data set with **true** labels (input corruptions, if any, applied).

        The training labels, which differ on the permuted examples, and the permuted mask are in
        :meth:`corruption`. Regenerated from the settings and checked against ``corruption.npz``.
        """
        return self._data_and_record()[0]

    def corruption(self):
        """The :class:`~mftma.experiments.corruptions.CorruptionRecord` saved with the run."""
        from mftma.experiments.corruptions import CorruptionRecord

        path = self.path / CORRUPTION_FILE
        if not path.exists():
            raise DataFileError(f"{path} is missing; the run's corruption record is lost")
        return CorruptionRecord.load(path)

    def metrics(self) -> pd.DataFrame:
        """Per-epoch metrics, one row per completed epoch (see ``mftma train --help`` for the columns)."""
        path = self.path / METRICS_FILE
        if not path.exists():
            raise DataFileError(f"{path} is missing; has training started?")
        try:
            return pd.read_csv(path)
        except (OSError, ValueError) as error:
            raise DataFileError(f"{path} is corrupt: {error}") from None

    def true_best_epoch(self) -> int:
        """The epoch of highest test accuracy in ``metrics.csv`` (the earliest one on ties), checkpointed or not."""
        return best_accuracy_epoch(self.metrics())

    def best_epoch_is_checkpointed(self) -> bool:
        """Whether :meth:`true_best_epoch` has a checkpoint (always, for runs trained since it is kept)."""
        return self.true_best_epoch() in self.checkpoint_epochs()

    def best_epoch(self) -> int:
        """The checkpointed epoch with the highest test accuracy (the earliest one on ties).

        Training keeps the checkpoint of the best test accuracy so far, so this is :meth:`true_best_epoch`.
        Runs trained before that checkpoint was kept may lack it: they fall back to the best checkpointed
        epoch with a warning that names the true best.
        """
        metrics = self.metrics()
        true_best = best_accuracy_epoch(metrics)
        checkpointed = metrics[metrics["epoch"].isin(self.checkpoint_epochs())]
        if checkpointed.empty:
            raise DataFileError(f"{self.path} has no checkpoint with metrics yet")
        best = best_accuracy_epoch(checkpointed)
        if best != true_best:
            accuracy = metrics.set_index("epoch")["acc_test"]
            warnings.warn(
                f"{self.path}: the epoch of best test accuracy, {true_best} ({accuracy[true_best]:.4f}), has no "
                f"checkpoint (the run was trained before the best checkpoint was kept); using the best "
                f"checkpointed epoch {best} ({accuracy[best]:.4f}) instead. Retrain into a new directory to "
                "keep the true best.",
                stacklevel=2,
            )
        return best

    def _data_and_record(self):
        if self._data is None:
            dataset, record = load_training_data(self.config)
            saved = self.corruption()
            if not np.array_equal(np.asarray(saved.train_labels), np.asarray(record.train_labels)):
                raise DataFileError(
                    f"{self.path / CORRUPTION_FILE} does not match the data regenerated from the config "
                    "(the data set or corruption code changed since training)"
                )
            true_labels = torch.as_tensor(np.asarray(record.true_labels), dtype=torch.int64)
            self._data = (dataclasses.replace(dataset, y_train=true_labels), saved)
        return self._data


def best_accuracy_epoch(metrics: pd.DataFrame) -> int:
    """The epoch of the row with the highest ``acc_test`` (the earliest one on ties).

    Parameters
    ----------
    metrics : pandas.DataFrame
        Rows with ``epoch`` and ``acc_test`` columns, e.g. :meth:`Run.metrics`.

    Examples
    --------
    >>> best_accuracy_epoch(pd.DataFrame({"epoch": [0, 1, 2, 3], "acc_test": [0.1, 0.7, 0.6, 0.7]}))
    1
    """
    if metrics.empty or metrics["acc_test"].isna().all():
        raise DataFileError("no epoch has a test accuracy yet")
    return int(metrics["epoch"].iloc[int(np.nanargmax(metrics["acc_test"].to_numpy()))])


def load_training_data(config: RunConfig):
    """The training data set (with training labels) and its corruption record, from the settings."""
    from mftma.experiments.corruptions import corrupt
    from mftma.experiments.datasets import load_dataset

    data = config.data
    dataset = load_dataset(data.name, data_dir=data.data_dir, seed=data.seed, **data.options)
    corruption = config.corruption
    return corrupt(dataset, kind=corruption.kind, fraction=corruption.fraction, seed=corruption.seed)


def _read_metadata(path: Path) -> dict:
    if not path.is_dir():
        raise DataFileError(f"run directory {path} does not exist")
    try:
        metadata = json.loads((path / METADATA_FILE).read_text())
    except FileNotFoundError:
        raise DataFileError(f"{path} is not an mftma run directory (no {METADATA_FILE})") from None
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path / METADATA_FILE} is corrupt: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != RUN_FORMAT:
        raise DataFileError(f"{path / METADATA_FILE} is not mftma run metadata")
    return metadata
