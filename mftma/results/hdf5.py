"""One HDF5 layout for every tidy table: a group holding one dataset per column, UTF-8 strings."""
from __future__ import annotations

import json

from mftma.errors import DataFileError


def write_h5_table(path, group_name: str, table, columns, string_columns, attrs: dict) -> None:
    """Write ``table``'s ``columns`` to the group ``group_name`` of a new HDF5 file ``path``.

    Parameters
    ----------
    path : str or Path
        The file (callers write to a temporary path and rename it, see :mod:`mftma.atomic`).
    group_name : str
        The group holding one dataset per column.
    table : pandas.DataFrame
    columns, string_columns : sequence of str
        The columns, in order, and those stored as UTF-8 strings.
    attrs : dict
        Attributes of the group (e.g. ``format``); ``columns`` (JSON list) is added.
    """
    import h5py

    with h5py.File(path, "w") as handle:
        group = handle.create_group(group_name)
        for key, value in attrs.items():
            group.attrs[key] = value
        group.attrs["columns"] = json.dumps(list(columns))
        for column in columns:
            values = table[column].to_numpy()
            if column in string_columns:
                group.create_dataset(column, data=values.astype(object), dtype=h5py.string_dtype("utf-8"))
            else:
                group.create_dataset(column, data=values)


def read_h5_table(path, group_name: str, columns, string_columns, file_format: str, what: str, optional=()):
    """Read what :func:`write_h5_table` wrote: ``({column: array}, {attribute: value})``.

    Columns named in ``optional`` are left out when the file lacks them (tables of older formats).

    Raises
    ------
    DataFileError
        The file is unreadable, lacks a column, or its ``format`` attribute is not ``file_format``
        (the message calls it ``what``, e.g. ``"results table"``).
    """
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            group = handle[group_name]
            if group.attrs.get("format") != file_format:
                raise DataFileError(f"{path} is not an mftma {what}")
            values = {column: group[column].asstr()[()] if column in string_columns else group[column][()]
                      for column in columns if column in group or column not in optional}
            return values, dict(group.attrs)
    except DataFileError:
        raise
    except (OSError, KeyError) as error:
        raise DataFileError(f"cannot read the {what} {path}: {error}") from error
