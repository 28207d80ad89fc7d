"""Running a network on a set of examples: its logits and its accuracy, batch by batch in eval mode.

The one place that measures a model on a subset: training (per-epoch metrics), the layer rollback and
the randomized networks of the flawed experiments all use it.
"""
from __future__ import annotations

import numpy as np
import torch

#: Examples per forward pass when a network is evaluated.
EVAL_BATCH_SIZE = 1024


@torch.no_grad()
def predict(model, x: torch.Tensor, device=None, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Logits of ``model`` (put in eval mode) for ``x``, batch by batch on ``device``, returned on the CPU."""
    model.eval()
    return torch.cat([model(batch if device is None else batch.to(device)).cpu() for batch in x.split(batch_size)])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose largest logit is at ``labels``; NaN when there are no rows."""
    if len(labels) == 0:
        return float("nan")
    return (logits.argmax(dim=1) == labels).double().mean().item()


def classification_accuracy(model, x: torch.Tensor, labels: torch.Tensor, device=None) -> float:
    """Accuracy of ``model`` (eval mode) on ``x`` against ``labels``; NaN for no examples."""
    if len(labels) == 0:
        return float("nan")
    return accuracy(predict(model, x, device), labels)


def evaluation_sets(dataset, record) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Inputs and labels of the four subsets (docs/method.md §1), as tensors.

    ``test`` (true labels), ``unpermuted`` and ``permuted`` (training labels), ``restored`` (the
    permuted examples with their true labels), from a dataset and its corruption record.
    """
    x_train = torch.as_tensor(np.asarray(dataset.x_train), dtype=torch.float32)
    train_labels = torch.as_tensor(np.asarray(record.train_labels), dtype=torch.int64)
    true_labels = torch.as_tensor(np.asarray(record.true_labels), dtype=torch.int64)
    permuted = torch.as_tensor(np.asarray(record.permuted_mask), dtype=torch.bool)
    return {
        "test": (torch.as_tensor(np.asarray(dataset.x_test), dtype=torch.float32),
                 torch.as_tensor(np.asarray(dataset.y_test), dtype=torch.int64)),
        "unpermuted": (x_train[~permuted], train_labels[~permuted]),
        "permuted": (x_train[permuted], train_labels[permuted]),
        "restored": (x_train[permuted], true_labels[permuted]),
    }
