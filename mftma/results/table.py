"""The results table of a run: schema, validation, atomic save and load.

The table is tidy: one row per (run, epoch, layer, subset, metric, settings) with its ``value``.
Results of several analysis settings (κ, n_t, n_reps, seed, probe settings) live side by side,
told apart by the ``settings`` key; figures and claims draw one settings at a time
(:func:`select_settings`, :func:`single_settings`).

========================== ==================================================================
column                     meaning
========================== ==================================================================
``run``                    name of the run directory
``epoch``                  training epoch of the checkpoint the activations come from (int)
``layer``                  analysis layer name (``"input"`` or a block name)
``layer_index``            position of the layer, 0 for ``"input"`` (int)
``subset``                 ``unpermuted``, ``permuted``, ``restored``, ``shuffled`` or ``test``
``metric``                 one of :data:`METRICS`
``value``                  the number (float)
``settings``               key of the analysis settings the row was computed with (a hash;
                           ``attrs["settings"][key]`` holds the settings themselves)
========================== ==================================================================

Metrics (docs/method.md §2, §3):

``capacity``
    MFTMA manifold capacity, averaged inversely over the class manifolds.
``radius``, ``dimension``
    MFTMA manifold radius and dimension, averaged over the class manifolds.
``center_correlation``
    mean absolute cosine between the class centers; ``K`` the number of common center
    directions removed before the anchor-point analysis.
``structure_agreement``, ``structure_objective``, ``runner_up_objective``, ``runner_up_K``
    how decided that choice was (see ``GeometryResult.structure``); flag cells with low agreement.
``participation_ratio``, ``explained_variance_dim``
    total data dimension of all points of the subset (90 % explained variance).
``probe_accuracy``, ``probe_accuracy_std``
    held-out accuracy of a linear softmax probe trained with the subset's own labels, mean and
    standard deviation over stratified folds.
``transfer_probe_accuracy``
    accuracy on test examples of a probe trained on the unpermuted training examples; stored on
    subset ``test`` only.
``warned_manifolds``
    number of the cell's manifolds for which the estimator issued an ``MFTMAWarning`` (a center
    almost inside the common center directions: radius and dimension may be outliers); a flag, not
    geometry, so figures do not draw it (:data:`FLAG_METRICS`).

Figures draw ``K``, the structure metrics and ``probe_accuracy_std`` only when asked for by name
(:data:`DIAGNOSTIC_METRICS`).

The estimator and probe settings (κ, n_t, n_reps, seeds, probe regularization and folds) of each
settings key are kept in ``frame.attrs["settings"]`` (a JSON-serializable dict ``{key: settings}``);
:func:`save_results` stores them as an attribute of the HDF5 group and :func:`load_results` restores
them. A table built by hand may omit the ``settings`` column (its rows get the key ``""``).

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
from mftma.names import SUBSETS
from mftma.results.hdf5 import read_h5_table, write_h5_table

RESULT_COLUMNS = ("run", "epoch", "layer", "layer_index", "subset", "metric", "value", "settings")
#: The settings of :func:`settings_summary`, by which :func:`select_settings` selects.
SETTINGS_FIELDS = ("kappa", "n_t", "n_reps", "seed", "probe_C", "probe_folds")
METRICS = (
    "capacity",
    "radius",
    "dimension",
    "center_correlation",
    "K",
    "structure_agreement", "structure_objective", "runner_up_objective", "runner_up_K",  # how decided K was
    "participation_ratio",
    "explained_variance_dim",
    "probe_accuracy",
    "probe_accuracy_std",
    "transfer_probe_accuracy",
    "warned_manifolds",
)
#: Metrics that flag cells rather than measure them.
FLAG_METRICS = ("warned_manifolds",)
#: Metrics that say how the estimator decided a cell (the center structure's rank and how clear the
#: choice was) or how spread the probe's folds were: checks of the numbers rather than geometry, so
#: figures draw them only when asked for by name.
DIAGNOSTIC_METRICS = ("K", "structure_agreement", "structure_objective", "runner_up_objective", "runner_up_K",
                      "probe_accuracy_std")
#: Subsets in the order tables and figures list them.
SUBSET_ORDER = SUBSETS

RESULTS_DIRNAME = "results"
RESULTS_H5 = "results.h5"
RESULTS_CSV = "results.csv"
_FORMAT = "mftma-results"
_FORMAT_VERSION = 2
_STRING_COLUMNS = ("run", "layer", "subset", "metric", "settings")
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
        Table with exactly the columns :data:`RESULT_COLUMNS` (``settings`` may be omitted: key ``""``).

    Returns
    -------
    pandas.DataFrame
        A copy with integer ``epoch``/``layer_index``, float ``value``, string labels, rows sorted by
        run, settings, epoch, layer index, subset (:data:`SUBSET_ORDER`) and metric (:data:`METRICS`),
        and ``attrs`` kept.

    Raises
    ------
    InputError
        If columns are missing or extra, a metric is unknown, or a (run, epoch, layer, subset,
        metric, settings) key occurs twice.

    Examples
    --------
    >>> row = dict(run="r", epoch=0, layer="input", layer_index=0, subset="test",
    ...            metric="capacity", value=0.04)
    >>> validate_results(pd.DataFrame([row]))["settings"].tolist()
    ['']
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"results must be a pandas DataFrame, got {type(frame).__name__}")
    if "settings" not in frame.columns:
        frame = frame.assign(settings="")
    if tuple(sorted(frame.columns)) != tuple(sorted(RESULT_COLUMNS)):
        raise InputError(f"results columns must be {list(RESULT_COLUMNS)}, got {list(frame.columns)}")
    unknown = sorted(set(frame["metric"]) - set(METRICS))
    if unknown:
        raise InputError(f"unknown metrics {unknown}; known metrics are {list(METRICS)}")
    table = frame.loc[:, list(RESULT_COLUMNS)].astype(
        {**{c: str for c in _STRING_COLUMNS}, **{c: np.int64 for c in _INT_COLUMNS}, "value": np.float64}
    )
    key = ["run", "epoch", "layer", "subset", "metric", "settings"]
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
    ).sort_values(["run", "settings", "epoch", "layer_index", "_subset", "subset", "_metric"], kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def save_results(run_dir, frame: pd.DataFrame) -> tuple[pathlib.Path, pathlib.Path]:
    """Write the results table to ``RUN_DIR/results/results.h5`` and ``results.csv`` atomically.

    Parameters
    ----------
    run_dir : str or path-like
        The run directory.
    frame : pandas.DataFrame
        A table following the schema of this module; ``frame.attrs["settings"]`` (a dict
        ``{key: settings}``), when present, is stored with it.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The HDF5 and CSV paths written.
    """
    table = validate_results(frame)
    directory = results_dir(run_dir)
    h5_path, csv_path = directory / RESULTS_H5, directory / RESULTS_CSV
    with atomic_path(h5_path) as temporary:
        write_h5_table(temporary, "results", table, RESULT_COLUMNS, _STRING_COLUMNS,
                       {"format": _FORMAT, "format_version": _FORMAT_VERSION,
                        "settings": json.dumps(table.attrs.get("settings", {}), sort_keys=True)})
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
        Tidy table with columns :data:`RESULT_COLUMNS`; ``attrs["settings"]`` maps each settings key
        to its estimator and probe settings. A table of format version 1 (one settings, no
        ``settings`` column) is read with its settings key filled in.

    Raises
    ------
    DataFileError
        If the file is missing or is not an mftma results file.
    """
    path = results_dir(run_dir) / RESULTS_H5
    if not path.exists():
        raise DataFileError(f"no results table at {path}; run `mftma analyze {run_dir}` first")
    columns, attrs = read_h5_table(path, "results", RESULT_COLUMNS, _STRING_COLUMNS, _FORMAT, "results file",
                                   optional=("settings",))
    if "settings" not in attrs:
        raise DataFileError(f"cannot read the results table {path}: it lacks the settings attribute")
    settings = json.loads(attrs["settings"])
    if int(attrs.get("format_version", 1)) == 1:  # one settings, no settings column
        settings = {settings.get("key", ""): settings} if settings else {}
    frame = pd.DataFrame(columns)
    if "settings" not in frame:
        frame["settings"] = next(iter(settings), "")
    frame.attrs["settings"] = settings
    return validate_results(frame)


def settings_summary(settings: dict | None) -> dict:
    """The settings a user chooses (:data:`SETTINGS_FIELDS`) from a settings dict of ``mftma analyze``.

    ``probe_C`` and ``probe_folds`` are None for an analysis without probes; an empty dict for
    unrecorded settings.
    """
    if not settings:
        return {}
    estimator, probe = settings["estimator"], settings.get("probe")
    return {"kappa": estimator["kappa"], "n_t": estimator["n_t"], "n_reps": estimator["n_reps"],
            "seed": estimator["seed"], "probe_C": probe["C"] if probe else None,
            "probe_folds": probe["n_splits"] if probe else None}


def describe_settings(table: pd.DataFrame, key: str) -> str:
    """One line naming a settings key of ``table`` and its settings, e.g. ``3fa1... (n_t=200, kappa=0.0, ...)``."""
    summary = settings_summary(table.attrs.get("settings", {}).get(key))
    described = ", ".join(f"{name}={value}" for name, value in summary.items()) or "settings not recorded"
    return f"{key or '(no key)'} ({described})"


def single_settings(table: pd.DataFrame) -> str:
    """The one settings key of ``table``.

    Raises
    ------
    InputError
        If the table mixes several analysis settings: it names them and how to select one.
    """
    keys = list(dict.fromkeys(table["settings"]))
    if len(keys) > 1:
        cells = table.groupby("settings")[["epoch", "layer", "subset"]].apply(lambda rows: len(rows.drop_duplicates()))
        listed = "; ".join(f"{describe_settings(table, key)}: {cells[key]} cells" for key in keys)
        raise InputError(
            f"the results table mixes {len(keys)} analysis settings ({listed}); select one, e.g. "
            "`mftma plot RUN_DIR --settings n_t=200` or `--settings KEY`, or in Python "
            "mftma.results.table.select_settings(table, n_t=200)"
        )
    return keys[0] if keys else ""


def select_settings(table: pd.DataFrame, key: str | None = None, **criteria) -> pd.DataFrame:
    """The rows of one analysis settings, chosen by key or by settings values.

    Parameters
    ----------
    table : pandas.DataFrame
        A results table (e.g. :func:`load_results`).
    key : str, optional
        A settings key (the ``settings`` column).
    **criteria
        Values of :data:`SETTINGS_FIELDS`, e.g. ``n_t=100``; all given ones must match.

    Returns
    -------
    pandas.DataFrame
        The rows of the one matching settings, ``attrs["settings"]`` reduced to it.

    Raises
    ------
    InputError
        Unknown criteria, or no or several settings match (they are listed).

    Examples
    --------
    >>> estimator = {"kappa": 0.0, "n_reps": 10, "seed": 0}
    >>> table = pd.DataFrame({"run": "r", "epoch": 0, "layer": "input", "layer_index": 0, "subset": "test",
    ...                       "metric": "capacity", "value": [0.1, 0.2], "settings": ["k100", "k200"]})
    >>> table.attrs["settings"] = {"k100": {"estimator": {**estimator, "n_t": 100}},
    ...                            "k200": {"estimator": {**estimator, "n_t": 200}}}
    >>> chosen = select_settings(table, n_t=100)
    >>> chosen["value"].tolist(), list(chosen.attrs["settings"])
    ([0.1], ['k100'])
    """
    table = validate_results(table)
    unknown = sorted(set(criteria) - set(SETTINGS_FIELDS))
    if unknown:
        raise InputError(f"unknown settings {unknown}; choose among {list(SETTINGS_FIELDS)}")
    recorded = table.attrs.get("settings", {})
    keys = [k for k in dict.fromkeys(table["settings"])
            if (key is None or k == key)
            and all(settings_summary(recorded.get(k)).get(name) == value for name, value in criteria.items())]
    if len(keys) != 1:
        available = "; ".join(describe_settings(table, k) for k in dict.fromkeys(table["settings"]))
        asked = ", ".join([*([f"key={key}"] if key is not None else []), *(f"{n}={v}" for n, v in criteria.items())])
        raise InputError(f"{len(keys)} analysis settings match {asked or 'nothing'}; the table holds: {available}")
    selected = table[table["settings"] == keys[0]].reset_index(drop=True)
    selected.attrs = {**table.attrs, "settings": {k: v for k, v in recorded.items() if k == keys[0]}}
    return selected
