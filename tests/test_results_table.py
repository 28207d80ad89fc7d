import h5py
import numpy as np
import pandas as pd
import pytest

from mftma.errors import DataFileError, InputError
from mftma.results.table import (
    RESULT_COLUMNS,
    empty_results,
    load_results,
    results_dir,
    save_results,
    select_settings,
    single_settings,
    validate_results,
)

SETTINGS = {"estimator": {"kappa": 0.0, "n_t": 20, "n_reps": 1, "seed": 1}, "probe": {"C": 1.0, "n_splits": 5}}


def _table():
    rows = [
        dict(run="run-a", epoch=epoch, layer=layer, layer_index=index, subset=subset, metric=metric,
             value=float(epoch + index + len(metric)))
        for epoch in (3, 0)
        for index, layer in ((1, "block1"), (0, "input"))
        for subset in ("test", "permuted")
        for metric in ("radius", "capacity")
    ]
    frame = pd.DataFrame(rows).assign(settings="k20")
    frame.attrs["settings"] = {"k20": SETTINGS}
    return frame


def _two_settings():
    """``_table()`` plus its capacity rows of epoch 3 recomputed with n_t = 100 (key ``k100``)."""
    first = _table()
    other = first[(first["epoch"] == 3) & (first["metric"] == "capacity")].assign(settings="k100", value=-1.0)
    both = pd.concat([first, other], ignore_index=True)
    both.attrs["settings"] = {"k20": SETTINGS, "k100": {**SETTINGS, "estimator": {**SETTINGS["estimator"], "n_t": 100}}}
    return both


def test_validate_orders_rows_and_sets_dtypes():
    table = validate_results(_table())
    assert tuple(table.columns) == RESULT_COLUMNS
    assert table["epoch"].dtype == np.int64 and table["value"].dtype == np.float64
    first = table.iloc[:4]
    assert list(first["epoch"]) == [0] * 4 and list(first["layer"]) == ["input"] * 4
    assert list(first["subset"]) == ["permuted", "permuted", "test", "test"]
    assert list(first["metric"]) == ["capacity", "radius", "capacity", "radius"]
    assert table.attrs["settings"] == {"k20": SETTINGS}


def test_hand_built_tables_get_the_empty_settings_key():
    table = validate_results(_table().drop(columns="settings"))
    assert set(table["settings"]) == {""} and single_settings(table) == ""


def test_several_settings_live_side_by_side_and_one_is_selected(tmp_path):
    save_results(tmp_path, _two_settings())
    both = load_results(tmp_path)
    assert len(both) == len(_table()) + 4 and set(both["settings"]) == {"k20", "k100"}
    with pytest.raises(InputError, match=r"mixes 2 analysis settings.*n_t=100.*4 cells.*select_settings"):
        single_settings(both)
    selected = select_settings(both, n_t=100)
    assert set(selected["value"]) == {-1.0} and len(selected) == 4
    assert selected.attrs["settings"] == {"k100": both.attrs["settings"]["k100"]}
    assert single_settings(selected) == "k100"
    pd.testing.assert_frame_equal(select_settings(both, key="k20"), validate_results(_table()))
    with pytest.raises(InputError, match="2 analysis settings match seed=1"):
        select_settings(both, seed=1)
    with pytest.raises(InputError, match="unknown settings"):
        select_settings(both, nt=100)


def test_a_table_of_format_version_1_is_read_with_its_key(tmp_path):
    save_results(tmp_path, _table())
    with h5py.File(results_dir(tmp_path) / "results.h5", "r+") as handle:
        group = handle["results"]
        del group["settings"]
        group.attrs["format_version"] = 1
        group.attrs["settings"] = '{"key": "old", "estimator": {"n_t": 20}}'
    loaded = load_results(tmp_path)
    assert set(loaded["settings"]) == {"old"} and loaded.attrs["settings"]["old"]["estimator"]["n_t"] == 20


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
        (lambda f: f.assign(extra=1), "columns"),
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
