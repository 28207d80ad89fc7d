"""The resumable training loop: ``train(config, run_dir)`` creates or continues a run directory.

One epoch is one pass over the (corrupted) training set in an order drawn from a seeded generator. After
every epoch the loop evaluates the network, appends a row to ``metrics.csv``, writes the per-example
signals of the training set (:mod:`mftma.experiments.example_signals`), the scheduled checkpoint and the
checkpoint of the best test accuracy so far (replacing the previous best unless that one is scheduled), and
finally rewrites ``checkpoints/resume.pt`` (model, optimizer, random states, epoch): that
write commits the epoch. A run killed at any point continues from its last committed epoch and, on the CPU,
ends with weights bit-identical to an uninterrupted run with the same settings.

Training stops with :class:`~mftma.errors.TrainingDivergedError` at the first non-finite minibatch loss, or
when an epoch ends with non-finite weights or evaluation losses, before anything of that epoch is written:
the checkpoints, ``resume.pt`` and ``metrics.csv`` keep ending at the last good epoch.

Metrics columns: ``epoch``; ``lr``; ``loss`` (mean minibatch cross-entropy against the training labels
during the epoch; at epoch 0 the eval-mode loss of the initial network); ``acc_train`` (all training
examples against their training labels); ``acc_unpermuted``; ``acc_permuted`` (permuted examples against
their training labels); ``acc_permuted_true`` (the same examples against their true labels); ``loss_test``;
``acc_test``; ``seconds`` (wall time of the epoch, evaluation included). Accuracies are fractions in [0, 1],
NaN for an empty group.
"""
from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from mftma.progress import progress_bar

import mftma
from mftma.atomic import atomic_write, atomic_write_text
from mftma.devices import resolve_device
from mftma.errors import DataFileError, InputError, TrainingDivergedError
from mftma.experiments import checkpoints, example_signals
from mftma.experiments.config import RunConfig, TrainingConfig
from mftma.experiments.evaluation import accuracy, predict
from mftma.experiments.models import build_model
from mftma.experiments.run import (
    CONFIG_FILE,
    CORRUPTION_FILE,
    METADATA_FILE,
    METRICS_FILE,
    RUN_FORMAT,
    Run,
    best_accuracy_epoch,
    load_training_data,
)
from mftma.run_lock import LOCK_FILE, run_directory_lock



def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
) -> Run:
    """Train the run described by ``config`` into ``run_dir``, resuming it if it was interrupted.

    Parameters
    ----------
    config : RunConfig
        The settings; a run directory belongs to one :meth:`RunConfig.settings_hash`.
    run_dir : str or Path
        Created if missing. If it holds a run with the same settings hash, training continues after
        its last complete epoch (nothing is recomputed when it is finished).
    progress : bool
        Show a tqdm progress bar over epochs.
    on_epoch_end : callable, optional
        Called with the epoch number after each committed epoch (e.g. to stop early).

    Returns
    -------
    Run
        The finished run.

    Raises
    ------
    InputError
        ``run_dir`` holds a run with different settings, or the settings are invalid (unknown data set or
        model names...).
    TrainingDivergedError
        A minibatch loss, the weights or the evaluation losses became NaN or infinite; the run directory
        keeps the epochs before (rerunning diverges again: change the settings, e.g. a lower learning rate).
    DataFileError
        ``run_dir`` is a non-empty folder that is not a run, another process writes into it (see
        :mod:`mftma.run_lock`), or a file cannot be written (disk full); files written before stay intact.
    """
    run_dir = Path(run_dir)
    with run_directory_lock(run_dir, "training", create=True):
        return _train(config, run_dir, progress, on_epoch_end)


def _train(config: RunConfig, run_dir: Path, progress: bool, on_epoch_end) -> Run:
    """The body of :func:`train`, run while holding the run directory's lock."""
    settings = config.training
    stored_metadata = _check_run_dir(config, run_dir)
    if settings.num_threads is not None:
        torch.set_num_threads(settings.num_threads)
    device = resolve_device(settings.device)
    if device.type == "cuda":
        # Deterministic convolution algorithms, so that a seed fixes the weights on a GPU too.
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    dataset, record = load_training_data(config)
    model = build_model(
        config.model.name,
        dataset.input_shape,
        dataset.num_classes,
        width=config.model.width,
        seed=settings.seed,
        **config.model.options,
    ).to(device)
    metadata = _write_run_files(run_dir, config, dataset, record, model, device, stored_metadata)
    optimizer = make_optimizer(model, settings)
    data = _TrainingData(dataset, record, device)
    schedule = checkpoints.checkpoint_schedule(settings.checkpoints, settings.epochs, settings.log_checkpoints)
    generator = torch.Generator().manual_seed(settings.seed)
    rows = _start_or_resume(run_dir, settings.seed, model, optimizer, generator, data, schedule, lr=settings.lr)

    bar = progress_bar(range(len(rows), settings.epochs + 1), initial=len(rows) - 1, total=settings.epochs,
                       desc=f"train {run_dir.name}", unit="epoch", enabled=progress)
    for epoch in bar:
        began = time.perf_counter()
        lr = settings.lr * lr_factor(settings, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = _train_epoch(model, optimizer, data, settings.batch_size, generator, epoch=epoch, progress=progress)
        row = _finish_epoch(run_dir, epoch, model, optimizer, generator, data, rows, schedule,
                            lr=lr, loss=loss, began=began)
        bar.set_postfix(loss=f"{row['loss']:.3f}", test=f"{row['acc_test']:.3f}",
                        permuted=f"{row['acc_permuted']:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if metadata["status"] != "complete":
        metadata["status"] = "complete"
        metadata["completed"] = _now()
        atomic_write_text(run_dir / METADATA_FILE, json.dumps(metadata, indent=2))
    return Run(run_dir)


def make_optimizer(model: nn.Module, settings: TrainingConfig) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or Adam over all parameters, with ``weight_decay``."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


def lr_factor(settings: TrainingConfig, epoch: int) -> float:
    """Multiplier of the base learning rate during epoch ``epoch`` (1-based).

    ``step`` multiplies by ``gamma`` once for every milestone already passed; ``cosine`` and ``linear``
    decay from 1 towards 0 over the epochs.
    """
    progress = (epoch - 1) / settings.epochs
    if settings.schedule == "step":
        return settings.gamma ** sum(milestone < epoch for milestone in settings.milestones)
    if settings.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if settings.schedule == "linear":
        return 1.0 - progress
    return 1.0


class _TrainingData:
    """The tensors the loop needs, with the permuted mask and the true labels of the training set."""

    def __init__(self, dataset, record, device):
        self.device = device
        self.x_train = torch.as_tensor(dataset.x_train, dtype=torch.float32)
        self.y_train = torch.as_tensor(dataset.y_train, dtype=torch.int64)
        self.y_true = torch.as_tensor(np.asarray(record.true_labels), dtype=torch.int64)
        self.permuted = torch.as_tensor(np.asarray(record.permuted_mask), dtype=torch.bool)
        self.x_test = torch.as_tensor(dataset.x_test, dtype=torch.float32)
        self.y_test = torch.as_tensor(dataset.y_test, dtype=torch.int64)


def _train_epoch(model, optimizer, data, batch_size, generator, *, epoch, progress) -> float:
    """One pass over the training set; the mean minibatch loss. Stops before a step on a non-finite loss."""
    model.train()
    order = torch.randperm(len(data.y_train), generator=generator)
    batches = order.split(batch_size)
    bar = progress_bar(batches, desc="batches", unit="batch", leave=False, enabled=progress)
    total, count = 0.0, 0
    for number, batch in enumerate(bar):
        x = data.x_train[batch].to(data.device, non_blocking=True)
        y = data.y_train[batch].to(data.device, non_blocking=True)
        loss = nn.functional.cross_entropy(model(x), y)
        value = loss.item()
        if not math.isfinite(value):
            raise _diverged(epoch, f"the loss of minibatch {number + 1} of {len(batches)} is {value}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += value * len(batch)
        count += len(batch)
    return total / count


def _check_finite(epoch: int, weights: dict[str, torch.Tensor], evaluation: dict[str, float]) -> None:
    """Raise :class:`TrainingDivergedError` if a weight or an evaluation loss after ``epoch`` is not finite."""
    bad = next((name for name, tensor in weights.items() if not torch.isfinite(tensor).all()), None)
    if bad is not None:
        raise _diverged(epoch, f"the weights {bad!r} hold NaN or inf at the end of the epoch")
    for name in ("train_loss_eval", "loss_test"):
        if not math.isfinite(evaluation[name]):
            raise _diverged(epoch, f"the evaluation loss {name} is {evaluation[name]}")


def _diverged(epoch: int, problem: str) -> TrainingDivergedError:
    kept = (f"the run directory stays as it was after epoch {epoch - 1} (its checkpoints, resume.pt and "
            "metrics.csv)" if epoch > 0 else "nothing was committed")
    return TrainingDivergedError(
        f"training diverged in epoch {epoch}: {problem}; nothing of epoch {epoch} was written and {kept}. "
        "The same settings would resume there and most likely diverge again: lower training.lr (or change "
        "other settings) and train into a new --out directory")


def _evaluate(train_logits, test_logits, data) -> dict[str, float]:
    permuted = data.permuted
    return {
        "train_loss_eval": nn.functional.cross_entropy(train_logits, data.y_train).item(),
        "acc_train": accuracy(train_logits, data.y_train),
        "acc_unpermuted": accuracy(train_logits[~permuted], data.y_train[~permuted]),
        "acc_permuted": accuracy(train_logits[permuted], data.y_train[permuted]),
        "acc_permuted_true": accuracy(train_logits[permuted], data.y_true[permuted]),
        "loss_test": nn.functional.cross_entropy(test_logits, data.y_test).item(),
        "acc_test": accuracy(test_logits, data.y_test),
    }


def _finish_epoch(run_dir, epoch, model, optimizer, generator, data, rows, schedule, *, lr,
                  loss=None, began=None) -> dict:
    """Evaluate and check finiteness, then write the metrics, the example signals, the checkpoints and
    (last, committing) the resume state."""
    began = time.perf_counter() if began is None else began
    train_logits = predict(model, data.x_train, data.device)
    evaluation = _evaluate(train_logits, predict(model, data.x_test, data.device), data)
    weights = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    _check_finite(epoch, weights, evaluation)
    train_loss_eval = evaluation.pop("train_loss_eval")
    row = {"epoch": epoch, "lr": lr, "loss": train_loss_eval if loss is None else loss, **evaluation}
    row["seconds"] = time.perf_counter() - began
    rows.append(row)
    atomic_write(run_dir / METRICS_FILE, lambda path: pd.DataFrame(rows).to_csv(path, index=False))
    example_signals.save_epoch(run_dir, epoch, train_logits, data.y_train)
    best = _save_checkpoints(run_dir, epoch, weights, schedule, rows)
    state = {"epoch": epoch, "model": weights, "optimizer": optimizer.state_dict(),
             "random": _random_state(generator)}
    checkpoints.atomic_torch_save(state, checkpoints.resume_path(run_dir))
    checkpoints.remove_checkpoints_except(run_dir, {*schedule, best})
    return row


def _save_checkpoints(run_dir, epoch, weights, schedule, rows) -> int:
    """Write ``epoch``'s checkpoint if it is scheduled or the best test accuracy so far; return the best epoch.

    The previous best is deleted only after the epoch is committed (see :func:`_finish_epoch`), so a
    crash in between never leaves the run without its best checkpoint.
    """
    best = best_accuracy_epoch(pd.DataFrame(rows))
    if epoch in schedule or epoch == best:
        checkpoints.atomic_torch_save({"epoch": epoch, "model": weights},
                                      checkpoints.checkpoint_path(run_dir, epoch))
    return best


def _write_run_files(run_dir, config, dataset, record, model, device, stored_metadata) -> dict:
    """Write run.json (new runs only), config.yaml and corruption.npz; return the run's metadata."""
    metadata = stored_metadata or _metadata(config, dataset, record, model, device)
    if stored_metadata is None:
        atomic_write_text(run_dir / METADATA_FILE, json.dumps(metadata, indent=2))
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
    _save_corruption(record, run_dir / CORRUPTION_FILE)
    return metadata


def _start_or_resume(run_dir, seed, model, optimizer, generator, data, schedule, *, lr) -> list[dict]:
    """Restore the last committed epoch, or seed and commit epoch 0; return the metrics rows so far."""
    state = _load_resume_state(run_dir)
    if state is not None:
        _restore(state, model, optimizer, generator, data.device)
        rows = _previous_rows(run_dir, state["epoch"])
        # Checkpoints of an epoch interrupted before its commit, or a best one superseded just before.
        checkpoints.remove_checkpoints_except(run_dir, {*schedule, best_accuracy_epoch(pd.DataFrame(rows))})
        return rows
    _seed_everything(seed)
    rows = []
    _finish_epoch(run_dir, 0, model, optimizer, generator, data, rows, schedule, lr=lr)
    return rows


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _random_state(generator: torch.Generator) -> dict:
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "data_order": generator.get_state(),
        "numpy_key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(numpy_state["state"]["pos"]),
        "numpy_gauss": [int(numpy_state["has_gauss"]), float(numpy_state["gauss"])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(state, model, optimizer, generator, device) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    random = state["random"]
    torch.set_rng_state(random["torch"])
    generator.set_state(random["data_order"])
    has_gauss, gauss = random["numpy_gauss"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": random["numpy_key"].numpy().astype(np.uint32), "pos": random["numpy_pos"]},
        "has_gauss": int(has_gauss),
        "gauss": gauss,
    })
    if device.type == "cuda" and "cuda" in random:
        torch.cuda.set_rng_state_all(random["cuda"])


def _load_resume_state(run_dir: Path) -> dict | None:
    path = checkpoints.resume_path(run_dir)
    return checkpoints.load_torch_file(path) if path.exists() else None


def _previous_rows(run_dir: Path, last_epoch: int) -> list[dict]:
    """Metrics rows up to the last committed epoch (a row written after it is recomputed)."""
    metrics = pd.read_csv(run_dir / METRICS_FILE)
    return metrics[metrics["epoch"] <= last_epoch].to_dict("records")


def _check_run_dir(config: RunConfig, run_dir: Path) -> dict | None:
    """The stored metadata when ``run_dir`` holds this run already, None for a new run directory.

    Errors when it holds another run or something else.
    """
    metadata_path = run_dir / METADATA_FILE
    if metadata_path.exists():
        try:
            metadata = json.loads(metadata_path.read_text())
        except (OSError, ValueError) as error:
            raise DataFileError(f"{metadata_path} is corrupt: {error}") from None
        existing = metadata.get("settings_hash") if isinstance(metadata, dict) else None
        if existing != config.settings_hash():
            raise InputError(
                f"{run_dir} already holds a run with other settings (settings hash {existing}, this config "
                f"{config.settings_hash()}{_differences(run_dir, config)}); choose another --out directory"
            )
        return metadata
    if run_dir.exists() and any(path.name != LOCK_FILE for path in run_dir.iterdir()):
        raise DataFileError(f"{run_dir} is not empty and not an mftma run directory; refusing to write into it")
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


def _differences(run_dir: Path, config: RunConfig) -> str:
    """``"; differing: training.lr, ..."`` from the stored config.yaml, or ``""`` if unreadable."""
    try:
        stored = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
        flat_old, flat_new = _flatten(stored), _flatten(config.to_dict())
    except (OSError, yaml.YAMLError, AttributeError):
        return ""
    keys = sorted(key for key in flat_old.keys() | flat_new.keys() if flat_old.get(key) != flat_new.get(key))
    return f"; differing: {', '.join(keys)}" if keys else ""


def _flatten(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and key != "options":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _save_corruption(record, path: Path) -> None:
    """Write the corruption record once; on resume check that the regenerated one matches it."""
    if path.exists():
        from mftma.experiments.corruptions import CorruptionRecord

        saved = CorruptionRecord.load(path)
        if not np.array_equal(np.asarray(saved.train_labels), np.asarray(record.train_labels)):
            raise DataFileError(f"{path} does not match the corruption regenerated from the settings")
        return
    record.save(path)


def _metadata(config, dataset, record, model, device) -> dict:
    return {
        "format": RUN_FORMAT,
        "format_version": 1,
        "settings_hash": config.settings_hash(),
        "status": "training",
        "created": _now(),
        "dataset": dataset.name,
        "num_classes": int(dataset.num_classes),
        "class_names": [str(name) for name in dataset.class_names],
        "input_shape": [int(size) for size in dataset.input_shape],
        "num_train": len(dataset.y_train),
        "num_test": len(dataset.y_test),
        "corruption": config.corruption.kind,
        "epsilon": config.corruption.fraction,
        "num_permuted": int(np.asarray(record.permuted_mask).sum()),
        "seeds": {"data": config.data.seed, "corruption": config.corruption.seed,
                  "training": config.training.seed},
        "model": {"name": config.model.name, "width": config.model.width, "options": config.model.options,
                  "layers": model.analysis_layers,
                  "num_parameters": sum(parameter.numel() for parameter in model.parameters())},
        "device": str(device),
        "versions": {"mftma": mftma.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
