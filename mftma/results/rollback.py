"""The tables of the layer rollback (docs/method.md §5): schema, order, atomic save and load.

``rollback``
    accuracy after rolling back k blocks: one row per (direction, k, epoch, subset), columns
    :data:`ROLLBACK_COLUMNS` (``metric`` is ``"accuracy"``, ``value`` in [0, 1], ``source`` the hash of the checkpoints it comes from);
``rollback_geometry``
    MFTMA geometry of the rolled-back networks' layers, columns :data:`GEOMETRY_COLUMNS` (estimator settings
    ``n_t``, ``n_reps``, ``seed`` side by side).

Each is stored as ``RUN_DIR/results/<name>.csv`` and ``<name>.h5`` (group ``/<name>``, one dataset per
column), both replaced atomically. They are computed by :mod:`mftma.pipeline.rollback`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mftma.atomic import atomic_write
from mftma.errors import DataFileError
from mftma.results.hdf5 import read_h5_table, write_h5_table
from mftma.results.table import results_dir

#: Which end of the network the rolled-back blocks are counted from (``first`` is the control).
DIRECTIONS = ("last", "first")
#: The subsets the rollback measures, in the order its tables list them (held-out examples first).
ROLLBACK_SUBSETS = ("test", "unpermuted", "permuted", "restored")  # shuffled labels were never trained on
ROLLBACK_COLUMNS = ("run", "final_epoch", "direction", "k", "epoch", "subset", "metric", "value", "source")
GEOMETRY_COLUMNS = ("run", "final_epoch", "direction", "k", "epoch", "layer", "layer_index", "subset", "metric",
                    "value", "kappa", "n_t", "n_reps", "seed", "source")
ROLLBACK_CSV = "rollback.csv"
#: Numeric columns that are not integers.
FLOAT_COLUMNS = ("value", "kappa")
#: The columns naming one cell of the rollback grid.
CELL_COLUMNS = ["epoch", "direction", "k"]


@dataclass(frozen=True)
class RollbackTable:
    """A tidy table of the rollback grid: its file name and columns."""

    name: str
    columns: tuple[str, ...]

    @property
    def string_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c in ("run", "direction", "layer", "subset", "metric", "source"))


ACCURACY_TABLE = RollbackTable("rollback", ROLLBACK_COLUMNS)
GEOMETRY_TABLE = RollbackTable("rollback_geometry", GEOMETRY_COLUMNS)


def sort_rollback(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by direction (:data:`DIRECTIONS`), epoch, k, layer and subset (:data:`ROLLBACK_SUBSETS`)."""
    keys = ["_direction", "epoch", "k", *(["layer_index"] if "layer_index" in table else []), "_subset"]
    order = table.assign(_direction=table["direction"].map({d: i for i, d in enumerate(DIRECTIONS)}),
                         _subset=table["subset"].map({s: i for i, s in enumerate(ROLLBACK_SUBSETS)}))
    return table.loc[order.sort_values(keys, kind="stable").index].reset_index(drop=True)


def rollback_csv_path(run_dir) -> Path:
    """``RUN_DIR/results/rollback.csv``."""
    return results_dir(run_dir) / ROLLBACK_CSV


def save_rollback(run_dir, table: pd.DataFrame) -> None:
    """Write the rollback table to ``RUN_DIR/results/rollback.h5`` and ``rollback.csv`` atomically."""
    save_table(run_dir, ACCURACY_TABLE, table)


def load_rollback(run_dir, missing_ok: bool = False) -> pd.DataFrame:
    """Read the rollback accuracy table of a run (columns :data:`ROLLBACK_COLUMNS`).

    Parameters
    ----------
    run_dir : str or Path
    missing_ok : bool
        Return an empty table instead of raising when there is none yet.

    Raises
    ------
    DataFileError
        The file is missing (unless ``missing_ok``), corrupt or not an mftma rollback table.
    """
    return load_table(run_dir, ACCURACY_TABLE, missing_ok)


def load_rollback_geometry(run_dir, missing_ok: bool = False) -> pd.DataFrame:
    """Read the rollback geometry table of a run (columns :data:`GEOMETRY_COLUMNS`); see :func:`load_rollback`."""
    return load_table(run_dir, GEOMETRY_TABLE, missing_ok)


def save_table(run_dir, spec: RollbackTable, table: pd.DataFrame) -> None:
    """Write ``table`` as ``RUN_DIR/results/<spec.name>.h5`` and ``.csv`` atomically."""
    directory = results_dir(run_dir)
    atomic_write(directory / f"{spec.name}.h5",
                 lambda temporary: write_h5_table(temporary, spec.name, table, spec.columns, spec.string_columns,
                                                  {"format": f"mftma-{spec.name}"}))
    atomic_write(directory / f"{spec.name}.csv", lambda temporary: table.to_csv(temporary, index=False))


def load_table(run_dir, spec: RollbackTable, missing_ok: bool) -> pd.DataFrame:
    """Read ``RUN_DIR/results/<spec.name>.h5``; an empty table when it is missing and ``missing_ok``."""
    path = results_dir(run_dir) / f"{spec.name}.h5"
    what = f"{spec.name.replace('_', ' ')} table"
    dtypes = {column: object if column in spec.string_columns else np.float64 if column in FLOAT_COLUMNS else np.int64
              for column in spec.columns}
    if not path.exists():
        if missing_ok:
            return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in dtypes.items()})
        raise DataFileError(f"no {what} at {path}; run `mftma rollback {run_dir}` first")
    columns, _ = read_h5_table(path, spec.name, spec.columns, spec.string_columns, f"mftma-{spec.name}", what,
                               optional=spec.columns)
    frame = pd.DataFrame(columns)
    for column in set(spec.columns) - set(frame.columns):  # a table of an older mftma: its rows are stale
        frame[column] = "" if column in spec.string_columns else -1
    return frame.loc[:, list(spec.columns)].astype(dtypes)
