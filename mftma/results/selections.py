"""Checks and reshaping of tidy results tables for plotting."""
from __future__ import annotations

import pandas as pd

from mftma.errors import InputError
from mftma.results.table import single_settings, validate_results


def require_columns(table: pd.DataFrame, columns, what: str) -> None:
    """Raise :class:`InputError` naming the columns of ``columns`` missing from ``table``."""
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"{what} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise InputError(f"{what} lacks the column(s) {missing}; it has {list(table.columns)}")


def check_results(results: pd.DataFrame) -> pd.DataFrame:
    """Validate a tidy results table of one run and one analysis settings; return it in canonical form.

    Raises
    ------
    InputError
        If the table breaks the schema of :mod:`mftma.results.table`, is empty, mixes several runs,
        or mixes several analysis settings (select one with
        :func:`mftma.results.table.select_settings`; values are never averaged across settings).
    """
    results = validate_results(results)
    if results.empty:
        raise InputError("results table is empty; run `mftma analyze RUN_DIR` first")
    if results["run"].nunique() > 1:
        raise InputError(
            f"results table holds several runs {sorted(results['run'].unique())}; select one run first"
        )
    single_settings(results)
    return results


def layer_order(results: pd.DataFrame) -> list[str]:
    """Layer names ordered by their ``layer_index``."""
    pairs = results[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")
    return list(pairs["layer"])


def metric_values(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of ``metric``; :class:`InputError` listing the available metrics if there are none."""
    rows = results[results["metric"] == metric]
    if rows.empty:
        raise InputError(f"metric {metric!r} is not in the results; available: {sorted(results['metric'].unique())}")
    return rows


def epoch_layer_grid(results: pd.DataFrame, metric: str, subset: str) -> pd.DataFrame:
    """Values of ``metric`` for ``subset`` as an epoch (rows) x layer (columns) frame.

    Missing cells are NaN; layers follow ``layer_index`` over the whole table.
    """
    rows = metric_values(results, metric)
    rows = rows[rows["subset"] == subset]
    if rows.empty:
        raise InputError(f"metric {metric!r} has no values for subset {subset!r}")
    try:
        grid = rows.pivot(index="epoch", columns="layer", values="value")
    except ValueError as error:
        raise InputError(f"results table has duplicate (epoch, layer) rows for {metric}/{subset}") from error
    layers = [layer for layer in layer_order(results) if layer in grid.columns]
    return grid.reindex(columns=layers).sort_index()


def layer_profile(results: pd.DataFrame, metric: str, subset: str, epoch: int) -> pd.Series:
    """Values of ``metric`` for ``subset`` at ``epoch`` indexed by layer (in layer order)."""
    grid = epoch_layer_grid(results, metric, subset)
    if epoch not in grid.index:
        raise InputError(f"epoch {epoch} was not analysed; analysed epochs: {list(grid.index)}")
    return grid.loc[epoch]
