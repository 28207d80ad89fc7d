import h5py
import numpy as np
import pandas as pd
import pytest

from mftma.errors import DataFileError, InputError
from mftma.pipeline.results import (
    RESULT_COLUMNS,
    empty_results,
    load_results,
    results_dir,
    save_results,
    validate_results,
)


def _table():
    rows = [
        dict(run="run-a", epoch=epoch, layer=layer, layer_index=index, subset=subset, metric=metric,
             value=float(epoch + index + len(metric)))
        for epoch in (3, 0)
        for index, layer in ((1, "block1"), (0, "input"))
        for subset in ("test", "permuted")
        for metric in ("radius", "capacity")
    ]
    frame = pd.DataFrame(rows)
    frame.attrs["settings"] = {"kappa": 0.0, "n_t": 20, "seed": 1, "probe": {"C": 1.0}}
    return frame


def test_validate_orders_rows_and_sets_dtypes():
    table = validate_results(_table())
    assert tuple(table.columns) == RESULT_COLUMNS
    assert table["epoch"].dtype == np.int64 and table["value"].dtype == np.float64
    first = table.iloc[:4]
    assert list(first["epoch"]) == [0] * 4 and list(first["layer"]) == ["input"] * 4
    assert list(first["subset"]) == ["permuted", "permuted", "test", "test"]
    assert list(first["metric"]) == ["capacity", "radius", "capacity", "radius"]
    assert table.attrs["settings"]["n_t"] == 20


def test_save_and_load_round_trip(tmp_path):
    h5_path, csv_path = save_results(tmp_path, _table())
    assert h5_path == results_dir(tmp_path) / "results.h5" and csv_path.exists()
    loaded = load_results(tmp_path)
    expected = validate_results(_table())
    pd.testing.assert_frame_equal(loaded, expected)
    assert loaded.attrs["settings"] == _table().attrs["settings"]
    pd.testing.assert_frame_equal(pd.read_csv(csv_path), expected)
    assert not [p for p in results_dir(tmp_path).iterdir() if p.name.endswith(".tmp")]


def test_empty_table_round_trip(tmp_path):
    save_results(tmp_path, empty_results())
    assert load_results(tmp_path).empty


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns="value"), "columns"),
        (lambda f: f.assign(metric="accuracy"), "unknown metrics"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "duplicated"),
    ],
)
def test_bad_tables_are_rejected(change, message):
    with pytest.raises(InputError, match=message):
        validate_results(change(_table()))


def test_load_errors(tmp_path):
    with pytest.raises(DataFileError, match="mftma analyze"):
        load_results(tmp_path)
    results_dir(tmp_path).mkdir()
    with h5py.File(results_dir(tmp_path) / "results.h5", "w") as handle:
        handle.create_group("results")
    with pytest.raises(DataFileError, match="not an mftma results file"):
        load_results(tmp_path)
    (results_dir(tmp_path) / "results.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataFileError, match="cannot read"):
        load_results(tmp_path)
