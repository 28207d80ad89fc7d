import argparse
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mftma.cli import analyze as analyze_cli
from mftma.errors import DataFileError, InputError
from mftma.pipeline.analyze import CELLS_DIRNAME, analyze_run
from mftma.results.table import METRICS, RESULT_COLUMNS, load_results, results_dir

EPOCHS, LAYERS = [0, 4], ["input", "logits"]
SUBSETS = ["unpermuted", "permuted", "restored", "shuffled", "test"]
CELLS = len(EPOCHS) * len(LAYERS) * len(SUBSETS)
FAST = dict(epochs=EPOCHS, layers=LAYERS, n_t=20, n_reps=1, seed=3, progress=False)


@pytest.fixture(scope="module")
def cached_run(tiny_cached_run):
    """The session's tiny run (conftest), its epochs EPOCHS of layers LAYERS cached; copy it before writing."""
    return tiny_cached_run


@pytest.fixture(scope="module")
def reference(cached_run, tmp_path_factory):
    """An uninterrupted analysis on a local cluster of two worker threads: (run_dir, table).

    It also compiles the estimator's numba functions into their on-disk cache, which worker
    processes started later load instead of compiling again.
    """
    run_dir = _copy(cached_run, tmp_path_factory.mktemp("reference"))
    return run_dir, analyze_run(run_dir, n_workers=2, processes=False, **FAST)


def _copy(run_dir, parent, with_results=False):
    target = parent / run_dir.name
    ignore = None if with_results else shutil.ignore_patterns("results")
    shutil.copytree(run_dir, target, ignore=ignore)
    return target


def _recorder():
    records = []
    return records, records.append


def _key(table):
    (key,) = table.attrs["settings"]
    return key


def _cells_dir(run_dir, table):
    return results_dir(run_dir) / CELLS_DIRNAME / _key(table)


def test_table_holds_every_cell_and_metric(reference):
    run_dir, table = reference
    assert tuple(table.columns) == RESULT_COLUMNS
    assert set(table["run"]) == {run_dir.name}
    cells = table.groupby(["epoch", "layer", "subset"])["metric"].apply(set)
    assert len(cells) == CELLS
    per_cell = set(METRICS) - {"transfer_probe_accuracy"}
    for (_, _, subset), metrics in cells.items():
        assert metrics == per_cell | ({"transfer_probe_accuracy"} if subset == "test" else set())
    assert np.isfinite(table["value"]).all()
    assert dict(zip(table["layer"], table["layer_index"])) == {"input": 0, "logits": 3}
    settings = table.attrs["settings"][_key(table)]
    assert set(table["settings"]) == {_key(table)} == {settings["key"]}
    assert settings["estimator"]["n_t"] == 20 and settings["probe"]["n_splits"] == 5


def test_values_are_sane(reference):
    values = reference[1].pivot_table("value", ["epoch", "layer", "subset"], "metric")
    assert ((values["capacity"] > 0) & (values["capacity"] <= 2.5)).all()
    assert ((values["probe_accuracy"] >= 0) & (values["probe_accuracy"] <= 1)).all()
    assert (values["K"] >= 0).all() and (values["participation_ratio"] >= 1).all()


def test_saved_table_equals_returned_table(reference):
    run_dir, table = reference
    pd.testing.assert_frame_equal(load_results(run_dir), table)
    assert len(pd.read_csv(results_dir(run_dir) / "results.csv")) == len(table)


def test_worker_processes_give_the_same_table(cached_run, reference, tmp_path):
    run_dir = _copy(cached_run, tmp_path)
    table = analyze_run(run_dir, n_workers=2, processes=True, **{**FAST, "epochs": [4], "layers": ["logits"]})
    expected = reference[1].query("epoch == 4 and layer == 'logits'").reset_index(drop=True)
    pd.testing.assert_frame_equal(table, expected.assign(run=run_dir.name))


def test_interrupted_analysis_resumes_and_matches(cached_run, reference, tmp_path):
    run_dir = _copy(cached_run, tmp_path)
    expected = reference[1].assign(run=run_dir.name)

    class Stop(Exception):
        pass

    seen = []

    def stop_after_three(record):
        seen.append(record)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        analyze_run(run_dir, n_workers=2, processes=False, on_cell_done=stop_after_three, **FAST)
    assert len(list(_cells_dir(run_dir, expected).glob("e*.json"))) == 3

    computed, hook = _recorder()
    resumed = analyze_run(run_dir, n_workers=2, processes=False, on_cell_done=hook, **FAST)
    assert len(computed) == CELLS - 3
    pd.testing.assert_frame_equal(resumed, expected)

    computed.clear()
    assert analyze_run(run_dir, on_cell_done=hook, **FAST).equals(expected)
    assert computed == []


def test_changed_settings_are_not_reused(reference, tmp_path):
    run_dir = _copy(reference[0], tmp_path, with_results=True)
    computed, hook = _recorder()
    changed = analyze_run(run_dir, processes=False, n_workers=1, on_cell_done=hook,
                          **{**FAST, "layers": ["input"], "n_t": 21, "probes": False})
    assert len(computed) == len(EPOCHS) * len(SUBSETS)
    assert _key(changed) != _key(reference[1])
    assert set(changed["layer"]) == {"input"} and "probe_accuracy" not in set(changed["metric"])
    side_by_side = load_results(run_dir)
    pd.testing.assert_frame_equal(side_by_side[side_by_side["settings"] == _key(reference[1])].reset_index(drop=True),
                                  reference[1].assign(run=run_dir.name))
    pd.testing.assert_frame_equal(side_by_side[side_by_side["settings"] == _key(changed)].reset_index(drop=True),
                                  changed)
    assert len(list((results_dir(run_dir) / CELLS_DIRNAME).iterdir())) == 2
    record = json.loads(next(_cells_dir(run_dir, changed).glob("e*.json")).read_text())
    assert set(record["seconds"]) == {"geometry"}


def test_probe_backend_is_part_of_the_settings(reference, tmp_path):
    run_dir = _copy(reference[0], tmp_path, with_results=True)
    computed, hook = _recorder()
    reference_backend = analyze_run(run_dir, processes=False, n_workers=1, on_cell_done=hook, probe_backend="sklearn",
                                    **{**FAST, "epochs": [4], "layers": ["input"]})
    assert len(computed) == len(SUBSETS)
    (default_settings,) = reference[1].attrs["settings"].values()
    (sklearn_settings,) = reference_backend.attrs["settings"].values()
    assert (default_settings["probe"]["backend"], sklearn_settings["probe"]["backend"]) == ("torch", "sklearn")
    merged = reference_backend.merge(reference[1], on=["epoch", "layer", "subset", "metric"])
    accuracies = merged[merged["metric"] == "probe_accuracy"]
    # 50 examples per subset in 5 folds: one borderline example moves the mean by 0.02.
    np.testing.assert_allclose(accuracies["value_x"], accuracies["value_y"], atol=0.02 + 1e-9)


def test_results_of_another_estimator_revision_are_not_reused(reference, tmp_path, monkeypatch):
    from mftma.pipeline import analyze

    run_dir = _copy(reference[0], tmp_path, with_results=True)
    monkeypatch.setattr(analyze, "SEEDED_RESULTS_REVISION", analyze.SEEDED_RESULTS_REVISION + 1)
    computed, hook = _recorder()
    table = analyze_run(run_dir, processes=False, n_workers=1, on_cell_done=hook,
                        **{**FAST, "epochs": [4], "layers": ["input"], "probes": False})
    assert len(computed) == len(SUBSETS)
    assert table.attrs["settings"][_key(table)]["estimator"]["revision"] == analyze.SEEDED_RESULTS_REVISION


def test_existing_scheduler_is_used(reference, tmp_path):
    from dask.distributed import LocalCluster

    run_dir = _copy(reference[0], tmp_path)
    computed, hook = _recorder()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        table = analyze_run(run_dir, scheduler=cluster.scheduler_address, on_cell_done=hook,
                            **{**FAST, "epochs": [4], "layers": ["logits"], "probes": False})
    assert len(computed) == len(SUBSETS)
    expected = reference[1].query("epoch == 4 and layer == 'logits' and not metric.str.contains('probe')")
    other = ["run", "settings"]  # the settings key differs: no probes
    pd.testing.assert_frame_equal(table.drop(columns=other), expected.drop(columns=other).reset_index(drop=True))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"layers": ["conv9"]}, InputError, r"layers \['conv9'\] have no complete cache entries"),
        ({"epochs": [2]}, InputError, "epochs"),
        ({"probe_folds": 6}, InputError, "fewer than the 6 probe folds"),
        ({"n_t": 0}, InputError, "n_t must be"),
        ({"kappa": float("nan")}, InputError, "kappa"),
    ],
)
def test_bad_requests_fail_before_any_work(cached_run, kwargs, error, message):
    with pytest.raises(error, match=message):
        analyze_run(cached_run, **{**FAST, **kwargs})
    assert not results_dir(cached_run).exists()


def test_incomplete_entries_are_skipped_with_a_warning(reference, tmp_path):
    import h5py

    run_dir = _copy(reference[0], tmp_path, with_results=True)
    with h5py.File(run_dir / "activations.h5", "r+") as handle:
        handle["epoch_0004/logits/test"].attrs["complete"] = False
    computed, hook = _recorder()
    with pytest.warns(UserWarning, match="1 incomplete entries"):
        analyze_run(run_dir, on_cell_done=hook, **FAST)
    assert computed == []


def test_unreadable_cell_record_is_a_data_file_error(reference, tmp_path):
    run_dir = _copy(reference[0], tmp_path, with_results=True)
    record = next(_cells_dir(run_dir, reference[1]).glob("e*.json"))
    record.write_text("{truncated")
    with pytest.raises(DataFileError, match="delete it to recompute"):
        analyze_run(run_dir, **FAST)


def test_a_damaged_cache_entry_is_reported_with_the_repair(cached_run, tmp_path):
    import h5py

    run_dir = _copy(cached_run, tmp_path)
    path = run_dir / "activations.h5"
    with h5py.File(path, "r") as h5:
        offset = h5["epoch_0004/logits/test"].id.get_chunk_info(1).byte_offset
    with open(path, "r+b") as handle:
        handle.seek(offset + 8)
        handle.write(b"\x13\x57\x9b\xdf")
    with pytest.raises(DataFileError, match=f"epoch 4, layer 'logits', subset 'test' cannot be read.*damaged.*"
                                            f"`mftma cache {run_dir} --rebuild`"):
        analyze_run(run_dir, processes=False, n_workers=1, **{**FAST, "epochs": [4], "layers": ["logits"],
                                                                 "subsets": ["test"]})


def test_missing_cache_is_a_data_file_error(tmp_path):
    with pytest.raises(DataFileError, match="mftma cache"):
        analyze_run(tmp_path, progress=False)


def test_command_line(reference, tmp_path, capsys):
    run_dir = _copy(reference[0], tmp_path, with_results=True)
    parser = argparse.ArgumentParser()
    analyze_cli.register(parser.add_subparsers())
    args = parser.parse_args(["analyze", str(run_dir), "--epochs", *map(str, EPOCHS), "--layers", *LAYERS,
                              "--n-t", "20", "--n-reps", "1", "--seed", "3", "--no-progress"])
    assert args.func(args) == 0
    assert f"{CELLS} cells" in capsys.readouterr().out
    pd.testing.assert_frame_equal(load_results(run_dir), reference[1].assign(run=run_dir.name))
    help_text = parser._subparsers._group_actions[0].choices["analyze"].format_help()
    for option in ("--epochs", "--layers", "--subsets", "--kappa", "--n-t", "--n-reps", "--seed", "--no-probes",
                   "--scheduler", "--workers", "--probe-folds", "--probe-c"):
        assert option in help_text


def test_warning_summary_names_the_warned_cells_in_order(tmp_path):
    from mftma.pipeline.analyze import WARNED_METRIC, warning_summary

    rows = [("e", 8, "fc1", 4, "test", WARNED_METRIC, 2.0, "k"),
            ("e", 2, "logits", 5, "permuted", WARNED_METRIC, 1.0, "k"),
            ("e", 2, "conv1", 1, "test", WARNED_METRIC, 0.0, "k"), ("e", 2, "conv1", 1, "test", "capacity", 0.1, "k")]
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    summary = warning_summary(table, tmp_path)
    assert summary.startswith("MFTMAWarning in 2 of 3 cells (3 manifolds): epoch 2 logits permuted (1), "
                              "epoch 8 fc1 test (2).")
    assert str(tmp_path / "results" / "results.csv") in summary
    assert warning_summary(table[table["value"] == 0], tmp_path) is None
