"""Torch device names: ``"auto"`` and a clear error for a CUDA device that is not there."""
from __future__ import annotations

import torch

from mftma.errors import InputError


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; an explicit CUDA device must exist.

    Raises
    ------
    InputError
        ``device`` names CUDA and no GPU is available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(device)
