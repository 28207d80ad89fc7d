"""Checkpoint files of a run directory: the schedule, their names, and atomic writes.

``RUN_DIR/checkpoints/epoch_XXXX.pt`` holds ``{"epoch": int, "model": state_dict}`` for each scheduled
epoch (0 is the initialisation) and for the epoch of best test accuracy so far, whose file is deleted
when a later epoch beats it unless it is scheduled (:func:`remove_checkpoints_except`). ``RUN_DIR/checkpoints/resume.pt`` is rewritten after every epoch with
everything needed to continue bit-identically (model, optimizer, random states, epoch). Every file is
written to a temporary file in the same folder and then renamed over its target, so a reader never sees a
half-written file and an interrupted write leaves the previous file intact.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mftma.atomic import atomic_write
from mftma.errors import DataFileError

CHECKPOINT_DIR = "checkpoints"
RESUME_FILE = "resume.pt"
_CHECKPOINT_NAME = re.compile(r"^epoch_(\d{4,})\.pt$")


def checkpoint_schedule(spec: str | Sequence[int], epochs: int, log_count: int = 30) -> list[int]:
    """Epochs to checkpoint out of ``0..epochs``; always includes 0 and ``epochs``.

    Parameters
    ----------
    spec : "all", "log" or sequence of int
        Every epoch; ``log_count`` distinct log-spaced epochs (dense early, where training changes fast);
        or the given epochs (those beyond ``epochs`` are dropped).
    epochs : int
        Number of training epochs.

    Examples
    --------
    >>> checkpoint_schedule("log", 100, log_count=8)
    [0, 1, 2, 4, 7, 14, 27, 52, 100]
    """
    if spec == "all":
        chosen = range(epochs + 1)
    elif spec == "log":
        chosen = _log_spaced(epochs, min(log_count, epochs))
    else:
        chosen = [epoch for epoch in spec if epoch <= epochs]
    return sorted({0, epochs, *chosen})


def _log_spaced(epochs: int, count: int) -> list[int]:
    """``count`` distinct integers in ``1..epochs``, log-spaced (denser sampling until rounding leaves enough)."""
    samples = count
    while True:
        chosen = np.unique(np.round(np.geomspace(1, epochs, samples)).astype(int))
        if len(chosen) >= count:
            return chosen.tolist()
        samples += 1


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """``RUN_DIR/checkpoints/epoch_XXXX.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"epoch_{epoch:04d}.pt"


def resume_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/checkpoints/resume.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / RESUME_FILE


def checkpoint_epochs(run_dir: str | Path) -> list[int]:
    """Epochs with a complete checkpoint file (temporary files of interrupted writes are ignored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    matches = (_CHECKPOINT_NAME.match(path.name) for path in folder.iterdir())
    return sorted(int(match.group(1)) for match in matches if match)


def remove_checkpoints_except(run_dir: str | Path, keep) -> list[int]:
    """Delete the checkpoint files of every epoch not in ``keep``; return the epochs removed.

    Training calls it after committing an epoch with ``keep`` = the schedule and the best epoch so far, so
    a superseded best checkpoint, or one written by an epoch that was interrupted before its commit, goes.
    """
    removed = [epoch for epoch in checkpoint_epochs(run_dir) if epoch not in set(keep)]
    for epoch in removed:
        checkpoint_path(run_dir, epoch).unlink(missing_ok=True)
    return removed


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` that never leaves a half-written file at ``path``."""
    atomic_write(path, lambda temporary: torch.save(obj, temporary))


def load_torch_file(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)`` onto the CPU, with a :class:`DataFileError` if unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataFileError(f"checkpoint file {path} does not exist") from None
    except Exception as error:  # torch raises many types for corrupt or foreign files
        raise DataFileError(f"checkpoint file {path} is corrupt or not an mftma checkpoint: {error}") from None
