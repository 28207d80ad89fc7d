"""The results table of a run: schema, validation, atomic save and load.

The table is tidy: one row per (run, epoch, layer, subset, metric) with its ``value``.

========================== ==================================================================
column                     meaning
========================== ==================================================================
``run``                    name of the run directory
``epoch``                  training epoch of the checkpoint the activations come from (int)
``layer``                  analysis layer name (``"input"`` or a block name)
``layer_index``            position of the layer, 0 for ``"input"`` (int)
``subset``                 ``unpermuted``, ``permuted``, ``restored`` or ``test``
``metric``                 one of :data:`METRICS`
``value``                  the number (float)
========================== ==================================================================

Metrics (docs/method.md §2, §3):

``capacity``
    MFTMA manifold capacity, averaged inversely over the class manifolds.
``radius``, ``dimension``
    MFTMA manifold radius and dimension, averaged over the class manifolds.
``center_correlation``
    mean absolute cosine between the class centers; ``K`` the number of common center
    directions removed before the anchor-point analysis.
``participation_ratio``, ``explained_variance_dim``
    total data dimension of all points of the subset (90 % explained variance).
``probe_accuracy``, ``probe_accuracy_std``
    held-out accuracy of a linear softmax probe trained with the subset's own labels, mean and
    standard deviation over stratified folds.
``transfer_probe_accuracy``
    accuracy on test examples of a probe trained on the unpermuted training examples; stored on
    subset ``test`` only.

The estimator and probe settings (κ, n_t, n_reps, seeds, probe regularization and folds) are kept
in ``frame.attrs["settings"]`` (a JSON-serializable dict); :func:`save_results` stores them as an
attribute of the HDF5 group and :func:`load_results` restores them.

Files: ``RUN_DIR/results/results.h5`` (group ``/results``, one dataset per column, UTF-8 strings)
and ``RUN_DIR/results/results.csv`` (the same rows), both replaced atomically.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd

from mftma.atomic import atomic_path
from mftma.errors import DataFileError, InputError
from mftma.experiments.subsets import SUBSETS

RESULT_COLUMNS = ("run", "epoch", "layer", "layer_index", "subset", "metric", "value")
METRICS = (
    "capacity",
    "radius",
    "dimension",
    "center_correlation",
    "K",
    "participation_ratio",
    "explained_variance_dim",
    "probe_accuracy",
    "probe_accuracy_std",
    "transfer_probe_accuracy",
)
#: Subsets in the order tables and figures list them.
SUBSET_ORDER = SUBSETS

RESULTS_DIRNAME = "results"
RESULTS_H5 = "results.h5"
RESULTS_CSV = "results.csv"
_FORMAT = "mftma-results"
_FORMAT_VERSION = 1
_STRING_COLUMNS = ("run", "layer", "subset", "metric")
_INT_COLUMNS = ("epoch", "layer_index")


def results_dir(run_dir) -> pathlib.Path:
    """Return ``RUN_DIR/results``, where the analysis writes its table and records."""
    return pathlib.Path(run_dir) / RESULTS_DIRNAME


def empty_results() -> pd.DataFrame:
    """Return an empty table with the result columns and dtypes."""
    return validate_results(pd.DataFrame({column: [] for column in RESULT_COLUMNS}))


def validate_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Check a results table against the schema and return it with canonical dtypes and order.

    Parameters
    ----------
    frame : pandas.DataFrame
        Table with exactly the columns :data:`RESULT_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        A copy with integer ``epoch``/``layer_index``, float ``value``, string labels, rows sorted by
        run, epoch, layer index, subset (:data:`SUBSET_ORDER`) and metric (:data:`METRICS`), and
        ``attrs`` kept.

    Raises
    ------
    InputError
        If columns are missing or extra, a metric is unknown, or a (run, epoch, layer, subset,
        metric) key occurs twice.

    Examples
    --------
    >>> row = dict(run="r", epoch=0, layer="input", layer_index=0, subset="test",
    ...            metric="capacity", value=0.04)
    >>> validate_results(pd.DataFrame([row])).shape
    (1, 7)
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"results must be a pandas DataFrame, got {type(frame).__name__}")
    if tuple(sorted(frame.columns)) != tuple(sorted(RESULT_COLUMNS)):
        raise InputError(f"results columns must be {list(RESULT_COLUMNS)}, got {list(frame.columns)}")
    unknown = sorted(set(frame["metric"]) - set(METRICS))
    if unknown:
        raise InputError(f"unknown metrics {unknown}; known metrics are {list(METRICS)}")
    table = frame.loc[:, list(RESULT_COLUMNS)].astype(
        {**{c: str for c in _STRING_COLUMNS}, **{c: np.int64 for c in _INT_COLUMNS}, "value": np.float64}
    )
    key = ["run", "epoch", "layer", "subset", "metric"]
    duplicated = table.duplicated(key)
    if duplicated.any():
        first = table.loc[duplicated, key].iloc[0].to_dict()
        raise InputError(f"results hold {int(duplicated.sum())} duplicated rows, e.g. {first}")
    table = _sorted(table)
    table.attrs = dict(frame.attrs)
    return table


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    subset_rank = {name: rank for rank, name in enumerate(SUBSET_ORDER)}
    metric_rank = {name: rank for rank, name in enumerate(METRICS)}
    order = table.assign(
        _subset=table["subset"].map(subset_rank).fillna(len(SUBSET_ORDER)),
        _metric=table["metric"].map(metric_rank),
    ).sort_values(["run", "epoch", "layer_index", "_subset", "subset", "_metric"], kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def save_results(run_dir, frame: pd.DataFrame) -> tuple[pathlib.Path, pathlib.Path]:
    """Write the results table to ``RUN_DIR/results/results.h5`` and ``results.csv`` atomically.

    Parameters
    ----------
    run_dir : str or path-like
        The run directory.
    frame : pandas.DataFrame
        A table following the schema of this module; ``frame.attrs["settings"]`` (a dict), when
        present, is stored with it.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The HDF5 and CSV paths written.
    """
    import h5py

    table = validate_results(frame)
    directory = results_dir(run_dir)
    h5_path, csv_path = directory / RESULTS_H5, directory / RESULTS_CSV
    with atomic_path(h5_path) as temporary:
        with h5py.File(temporary, "w") as handle:
            group = handle.create_group("results")
            group.attrs["format"] = _FORMAT
            group.attrs["format_version"] = _FORMAT_VERSION
            group.attrs["columns"] = json.dumps(list(RESULT_COLUMNS))
            group.attrs["settings"] = json.dumps(table.attrs.get("settings", {}), sort_keys=True)
            for column in RESULT_COLUMNS:
                values = table[column].to_numpy()
                if column in _STRING_COLUMNS:
                    values = values.astype(object)
                    group.create_dataset(column, data=values, dtype=h5py.string_dtype("utf-8"))
                else:
                    group.create_dataset(column, data=values)
    with atomic_path(csv_path) as temporary:
        table.to_csv(temporary, index=False)
    return h5_path, csv_path


def load_results(run_dir) -> pd.DataFrame:
    """Read the results table written by :func:`save_results`.

    Parameters
    ----------
    run_dir : str or path-like
        The run directory (its ``results/results.h5`` is read).

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns :data:`RESULT_COLUMNS`; ``attrs["settings"]`` holds the estimator
        and probe settings.

    Raises
    ------
    DataFileError
        If the file is missing or is not an mftma results file.
    """
    import h5py

    path = results_dir(run_dir) / RESULTS_H5
    if not path.exists():
        raise DataFileError(f"no results table at {path}; run `mftma analyze {run_dir}` first")
    try:
        with h5py.File(path, "r") as handle:
            group = handle["results"]
            if group.attrs.get("format") != _FORMAT:
                raise DataFileError(f"{path} is not an mftma results file")
            columns = {
                column: group[column].asstr()[()] if column in _STRING_COLUMNS else group[column][()]
                for column in RESULT_COLUMNS
            }
            settings = json.loads(group.attrs["settings"])
    except DataFileError:
        raise
    except (OSError, KeyError) as error:
        raise DataFileError(f"cannot read the results table {path}: {error}") from error
    frame = pd.DataFrame(columns)
    frame.attrs["settings"] = settings
    return validate_results(frame)
