"""Finding the mislabeled (permuted) training examples from per-example signals recorded during training.

Beyond the paper: can the training dynamics tell which examples carry a wrong label? Each signal ranks the
training examples at epoch ``e`` from what training recorded up to ``e``
(:mod:`mftma.experiments.example_signals`, eval-mode logits after each epoch, against the training labels);
higher means more suspicious:

``loss``                cross-entropy at epoch ``e``
``logit_grad_norm``     ``||softmax - onehot||_2`` at epoch ``e``: the exact norm of the loss's gradient with
                        respect to the logits
``negative_margin``     ``max_{k != y} z_k - z_y`` at epoch ``e``
``cumulative_loss``     sum of the losses of epochs ``0..e``
``first_fitted_epoch``  the first epoch in ``1..e`` at which the training label is predicted (``e + 1`` if
                        never): late fitting is suspicious (epoch 0's chance fits are not counted)
``forgetting_events``   how often, in epochs ``1..e``, a predicted training label stopped being predicted

The truth is ``permuted_mask`` of ``corruption.npz``. For each (epoch, signal) the table gives the ROC-AUC
(:func:`sklearn.metrics.roc_auc_score`: the probability that a random permuted example ranks above a random
unpermuted one, ties counting half; 0.5 is chance) and the precision at epsilon: the fraction of permuted
examples among the ``round(epsilon * n)`` top-ranked, with epsilon the run's fraction of permuted examples
(chance: epsilon; ties at the cut count in proportion, the expected precision under a random order of the
tied examples).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mftma.errors import DataFileError, InputError
from mftma.names import NOISE_SIGNALS

#: Signal names, in the order of the table and the figure's legend.
SIGNALS = NOISE_SIGNALS
TABLE_FILE = "noise_detection.csv"
FIGURE_STEM = "noise_detection"
COLUMNS = ["epoch", "signal", "roc_auc", "precision_at_eps", "epsilon", "n_train", "n_permuted"]


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for finding the ``positive`` examples (ties count half).

    Examples
    --------
    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.75
    """
    from sklearn.metrics import roc_auc_score

    positive = _check_labels(scores, positive)
    return float(roc_auc_score(positive, scores))


def precision_at_fraction(scores: np.ndarray, positive: np.ndarray, fraction: float) -> float:
    """Fraction of ``positive`` examples among the ``round(fraction * n)`` highest ``scores``.

    Examples tied with the last one kept count in proportion: the result is the expected precision when
    ties are ordered at random.

    Examples
    --------
    >>> precision_at_fraction(np.array([3.0, 2.0, 1.0, 0.0]), np.array([True, False, True, False]), 0.5)
    0.5
    >>> precision_at_fraction(np.array([1.0, 1.0, 1.0, 0.0]), np.array([True, True, False, False]), 0.5)
    0.6666666666666666
    """
    positive = _check_labels(scores, positive)
    count = int(round(fraction * len(scores)))
    if not 1 <= count <= len(scores):
        raise InputError(f"fraction {fraction} keeps {count} of {len(scores)} examples; it must keep at least one")
    threshold = np.sort(scores)[::-1][count - 1]
    above, tied = scores > threshold, scores == threshold
    from_ties = count - int(above.sum())
    return float((positive[above].sum() + from_ties * positive[tied].mean()) / count)


def _check_labels(scores, positive) -> np.ndarray:
    positive = np.asarray(positive, dtype=bool)
    if np.shape(scores) != positive.shape or positive.ndim != 1:
        raise InputError(f"scores {np.shape(scores)} and labels {positive.shape} must be 1-D of the same length")
    if positive.all() or not positive.any():
        raise InputError("finding mislabeled examples needs both permuted and unpermuted examples")
    if not np.all(np.isfinite(scores)):
        raise InputError("the scores contain NaN or infinite values")
    return positive


def signal_scores(recorded: dict[str, np.ndarray], epochs) -> dict[str, np.ndarray]:
    """Every signal of :data:`SIGNALS` at every epoch, shaped ``(len(epochs), n_train)``, higher = more suspicious.

    Parameters
    ----------
    recorded : dict of ndarray
        :func:`mftma.experiments.example_signals.load_signals` of ``epochs``.
    epochs : sequence of int
        ``0, 1, ..., E``: every epoch of the run, in order (the cumulative signals need all of them).
    """
    epochs = np.asarray(epochs)
    if not np.array_equal(epochs, np.arange(len(epochs))):
        raise InputError(f"signals need every epoch from 0 on; got {epochs.tolist()}")
    correct = recorded["correct"].astype(bool)
    fitted_since_1 = np.cumsum(correct[1:], axis=0) > 0
    first_fitted = np.vstack([np.ones((1, correct.shape[1])),  # epoch 0: nothing fitted yet, e + 1 = 1
                              np.where(fitted_since_1, _first_true(correct[1:]) + 1, epochs[1:, None] + 1)])
    forgotten = correct[:-1] & ~correct[1:]
    return {
        "loss": recorded["loss"],
        "logit_grad_norm": recorded["logit_grad_norm"],
        "negative_margin": -recorded["margin"],
        "cumulative_loss": np.cumsum(recorded["loss"].astype(np.float64), axis=0),
        "first_fitted_epoch": first_fitted,
        "forgetting_events": np.vstack([np.zeros((1, correct.shape[1])), np.cumsum(forgotten, axis=0)]),
    }


def _first_true(flags: np.ndarray) -> np.ndarray:
    """Index along axis 0 of the first True of each column (its length when none)."""
    return np.where(flags.any(axis=0), flags.argmax(axis=0), len(flags))


def detection_table(run_dir: str | Path) -> pd.DataFrame:
    """ROC-AUC and precision at epsilon of every signal at every epoch of a run (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, one row per (epoch, signal).

    Raises
    ------
    DataFileError
        The run has no recorded signals (trained before they were recorded; the message says what to run).
    InputError
        The run has no permuted examples, or only permuted ones.
    """
    from mftma.experiments.example_signals import load_signals
    from mftma.experiments.run import Run

    run = Run(run_dir)
    epochs = run.metrics()["epoch"].astype(int).tolist()
    permuted = np.asarray(run.corruption().permuted_mask, dtype=bool)
    if permuted.all() or not permuted.any():
        raise InputError(f"{run.path} has {int(permuted.sum())} permuted of {len(permuted)} training examples; "
                         "finding mislabeled examples needs a run with some (corruption kind 'permute')")
    recorded = load_signals(run.path, epochs)
    if recorded["loss"].shape[1] != len(permuted):
        raise DataFileError(f"{run.path}: the signals cover {recorded['loss'].shape[1]} examples, "
                            f"the corruption record {len(permuted)}")
    epsilon = float(permuted.mean())
    rows = [
        {"epoch": epoch, "signal": name, "roc_auc": roc_auc(scores[index], permuted),
         "precision_at_eps": precision_at_fraction(scores[index], permuted, epsilon),
         "epsilon": epsilon, "n_train": len(permuted), "n_permuted": int(permuted.sum())}
        for name, scores in signal_scores(recorded, epochs).items()
        for index, epoch in enumerate(epochs)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def best_detection(table: pd.DataFrame) -> pd.Series:
    """The row of highest ROC-AUC (the earliest epoch, then the first signal of :data:`SIGNALS`, on ties)."""
    order = table.assign(_rank=table["signal"].map(SIGNALS.index)).sort_values(["epoch", "_rank"], kind="stable")
    return order.loc[order["roc_auc"].idxmax()].drop("_rank")


def detect_noise(run_dir: str | Path, out_dir: str | Path | None = None,
                 formats=("png",)) -> tuple[pd.DataFrame, list[Path]]:
    """Write the detection table and its figure; return the table and the written files.

    Parameters
    ----------
    run_dir : str or Path
        A run directory trained with per-example signals.
    out_dir : str or Path, optional
        Output folder (default ``RUN_DIR/results``): ``noise_detection.csv`` and ``noise_detection.<format>``.
    formats : sequence of str
        Figure formats.
    """
    import matplotlib.pyplot as plt

    from mftma.atomic import atomic_write
    from mftma.results.table import results_dir
    from mftma.plotting.noise_detection import detection_curves
    from mftma.plotting.style import save_figure

    table = detection_table(run_dir)
    out_dir = results_dir(run_dir) if out_dir is None else Path(out_dir)
    csv = out_dir / TABLE_FILE
    atomic_write(csv, lambda path: table.to_csv(path, index=False))
    figure = detection_curves(table)
    try:
        figures = save_figure(figure, out_dir / FIGURE_STEM, formats)
    finally:
        plt.close(figure)
    return table, [csv, *figures]
