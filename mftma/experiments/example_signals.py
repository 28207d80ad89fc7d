"""Per-example training signals, recorded after every epoch from the evaluation pass over the training set.

``RUN_DIR/example_signals/epoch_XXXX.npz`` (pickle-free, written atomically before the epoch is committed, so
a resumed run rewrites the file of an interrupted epoch) holds, for every training example ``i`` in data-set
order, computed from the eval-mode logits ``z_i`` of the network at the end of the epoch and the
**training** label ``y_i``:

``loss``
    the cross-entropy ``-log softmax(z_i)[y_i]``;
``logit_grad_norm``
    ``||softmax(z_i) - onehot(y_i)||_2``, the exact norm of the gradient of that loss with respect to the
    logits (the per-example error signal back-propagated into the network);
``margin``
    ``z_i[y_i] - max_{k != y_i} z_i[k]`` (positive when the training label is predicted);
``correct``
    whether the training label is the predicted class (``argmax z_i == y_i``).

They cost one softmax over logits the metrics already compute: no extra forward or backward pass. All are
float32 except ``correct`` (bool). Epoch 0 is the initial network.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mftma.errors import DataFileError
from mftma.experiments.npz import load_npz, save_npz

SIGNALS_DIR = "example_signals"
#: The arrays of each epoch's file.
RECORDED = ("loss", "logit_grad_norm", "margin", "correct")


def signals_path(run_dir: str | Path, epoch: int) -> Path:
    """``RUN_DIR/example_signals/epoch_XXXX.npz``."""
    return Path(run_dir) / SIGNALS_DIR / f"epoch_{epoch:04d}.npz"


def example_signals(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """The recorded signals of every example from its logits ``(n, C)`` and training labels ``(n,)``.

    Examples
    --------
    >>> signals = example_signals(torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]))
    >>> signals["correct"].tolist(), signals["margin"].tolist()
    ([True, False], [2.0, 0.0])
    >>> round(float(signals["logit_grad_norm"][1]), 4)  # softmax (0.5, 0.5) - (0, 1)
    0.7071
    """
    logits = logits.double()
    rows = torch.arange(len(labels))
    log_probabilities = torch.log_softmax(logits, dim=1)
    error = log_probabilities.exp()
    error[rows, labels] -= 1.0
    others = logits.clone()
    others[rows, labels] = -torch.inf
    signals = {
        "loss": -log_probabilities[rows, labels],
        "logit_grad_norm": torch.linalg.vector_norm(error, dim=1),
        "margin": logits[rows, labels] - others.max(dim=1).values,
    }
    arrays = {name: value.numpy().astype(np.float32) for name, value in signals.items()}
    arrays["correct"] = (logits.argmax(dim=1) == labels).numpy()
    return arrays


def save_epoch(run_dir: str | Path, epoch: int, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Write the signals of ``epoch`` atomically (see the module docstring)."""
    save_npz(signals_path(run_dir, epoch), example_signals(logits, labels))


def load_signals(run_dir: str | Path, epochs: Sequence[int]) -> dict[str, np.ndarray]:
    """The recorded signals of ``epochs``, stacked into arrays of shape ``(len(epochs), n_train)``.

    Raises
    ------
    DataFileError
        Some epochs have no signals file (e.g. the run was trained before signals were recorded: train it
        again into a new directory with ``mftma train CONFIG --out NEW_RUN_DIR``), or a file is corrupt.
    """
    missing = [epoch for epoch in epochs if not signals_path(run_dir, epoch).is_file()]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DataFileError(
            f"{run_dir} has no per-example training signals for {len(missing)} of its {len(epochs)} epochs "
            f"({shown}); it was probably trained before they were recorded. Train it again into a new "
            f"directory (mftma train {Path(run_dir) / 'config.yaml'} --out NEW_RUN_DIR) to record them."
        )
    per_epoch = [load_npz(signals_path(run_dir, epoch), RECORDED, "per-example signals file") for epoch in epochs]
    sizes = {len(arrays["loss"]) for arrays in per_epoch}
    if len(sizes) != 1:
        raise DataFileError(f"{run_dir / SIGNALS_DIR}: the epochs' files hold different numbers of examples {sizes}")
    return {name: np.stack([arrays[name] for arrays in per_epoch]) for name in RECORDED}
