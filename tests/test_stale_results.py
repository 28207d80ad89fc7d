"""Analysis cells and rollback rows are keyed by what they came from; settings live side by side."""
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from mftma.cli import main
from mftma.errors import DataFileError, InputError
from mftma.names import SUBSETS
from mftma.experiments.checkpoints import atomic_torch_save, checkpoint_path
from mftma.pipeline.analyze import CELLS_DIRNAME, analyze_run
from mftma.pipeline.claims import evaluate_claims
from mftma.results.table import METRICS, load_results, results_dir, select_settings
from mftma.pipeline.rollback import load_rollback, rollback
from mftma.pipeline.figures import plot_run

#: Rows of a cell analysed without probes: every metric but the three probe accuracies.
GEOMETRY_METRICS_PER_CELL = len(set(METRICS) - {"probe_accuracy", "probe_accuracy_std", "transfer_probe_accuracy"})

FAST = dict(epochs=[0, 4], layers=["logits"], n_t=10, n_reps=1, probes=False, progress=False)


def _copy(run_dir, parent):
    """A copy of ``run_dir`` (without results) named ``run`` under ``parent``."""
    target = parent / "run"
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("results"))
    return target


def _replace_weights(run_dir, epoch, donor):
    """Put the weights of checkpoint ``donor`` into checkpoint ``epoch`` (as a user replacing a checkpoint)."""
    content = torch.load(checkpoint_path(run_dir, epoch), weights_only=True)
    content["model"] = torch.load(checkpoint_path(run_dir, donor), weights_only=True)["model"]
    atomic_torch_save(content, checkpoint_path(run_dir, epoch))


def _record_times(run_dir):
    return {path.name: path.stat().st_mtime_ns for path in (results_dir(run_dir) / CELLS_DIRNAME).rglob("e*.json")}


def test_rebuilt_cache_recomputes_exactly_the_changed_cells(tiny_cached_run, tmp_path):
    run_dir = _copy(tiny_cached_run, tmp_path / "a")
    before = analyze_run(run_dir, processes=False, n_workers=1, **FAST)
    times = _record_times(run_dir)

    _replace_weights(run_dir, 4, donor=2)
    assert main(["cache", str(run_dir), "--epochs", "0", "4", "--layers", "input", "logits", "--rebuild",
                 "--no-progress"]) == 0
    after = analyze_run(run_dir, processes=False, n_workers=1, **FAST)
    pd.testing.assert_frame_equal(load_results(run_dir), after)

    fresh_dir = _copy(run_dir, tmp_path / "fresh")
    fresh = analyze_run(fresh_dir, processes=False, n_workers=1, **FAST)
    pd.testing.assert_frame_equal(after, fresh, check_exact=True)
    epoch4 = after["epoch"] == 4
    assert not np.array_equal(after.loc[epoch4, "value"], before.loc[epoch4, "value"])
    pd.testing.assert_frame_equal(after[~epoch4], before[~epoch4], check_exact=True)
    changed = {name for name, time in _record_times(run_dir).items() if times[name] != time}
    assert changed == {f"e0004-l003-{subset}.json" for subset in SUBSETS}


def test_replaced_checkpoint_recomputes_its_rollback_rows(tiny_cached_run, tmp_path):
    run_dir = _copy(tiny_cached_run, tmp_path / "a")
    grid = ["--k", "1", "3", "--epochs", "0", "2", "--direction", "last", "--no-plot", "--no-progress"]
    assert main(["rollback", str(run_dir), *grid]) == 0
    before = load_rollback(run_dir)
    _replace_weights(run_dir, 2, donor=1)
    assert main(["rollback", str(run_dir), *grid]) == 0
    after = load_rollback(run_dir)

    fresh_dir = _copy(run_dir, tmp_path / "fresh")
    fresh = rollback(fresh_dir, ks=[1, 3], epochs=[0, 2], directions=["last"])
    pd.testing.assert_frame_equal(after, fresh, check_exact=True)
    at_2 = after["epoch"] == 2
    k3 = (after["k"] == 3) & at_2  # all three blocks from epoch 2: now epoch 1's accuracies
    assert not after.loc[k3, "value"].equals(before.loc[k3, "value"])
    pd.testing.assert_frame_equal(after[~at_2], before[~at_2], check_exact=True)

    _replace_weights(run_dir, 4, donor=3)  # the final checkpoint: every row changes source
    final = rollback(run_dir, ks=[1, 3], epochs=[0, 2], directions=["last"])
    assert set(final["source"]).isdisjoint(after["source"])


def test_calls_return_what_they_asked_and_keep_the_table(tiny_cached_run, tmp_path):
    run_dir = _copy(tiny_cached_run, tmp_path / "a")
    full = analyze_run(run_dir, processes=False, n_workers=1, **{**FAST, "layers": ["input", "logits"]})
    part = analyze_run(run_dir, processes=False, n_workers=1, **{**FAST, "epochs": [4], "n_t": 12})
    assert set(zip(part["epoch"], part["layer"])) == {(4, "logits")} and len(part) == len(SUBSETS) * GEOMETRY_METRICS_PER_CELL
    table = load_results(run_dir)
    assert len(table) == len(full) + len(part)
    pd.testing.assert_frame_equal(select_settings(table, n_t=10), full)
    again = analyze_run(run_dir, processes=False, n_workers=1, **{**FAST, "epochs": [0]})
    assert set(again["epoch"]) == {0} and set(again["layer"]) == {"logits"}
    pd.testing.assert_frame_equal(load_results(run_dir), table)

    tiny = rollback(run_dir, ks=[1], epochs=[0], directions=["last"])
    assert set(zip(tiny["k"], tiny["epoch"])) == {(0, 0), (1, 0)}
    rollback(run_dir, ks=[2], epochs=[2], directions=["last"])
    assert len(load_rollback(run_dir)) == len(tiny) + 2 * 4


def test_plot_and_claims_refuse_mixed_settings_and_name_the_selected(tiny_cached_run, tmp_path):
    run_dir = _copy(tiny_cached_run, tmp_path / "a")
    analyze_run(run_dir, processes=False, n_workers=1, **{**FAST, "layers": ["input", "logits"]})
    analyze_run(run_dir, processes=False, n_workers=1, **{**FAST, "n_t": 12})
    table = load_results(run_dir)
    with pytest.raises(InputError, match=r"mixes 2 analysis settings.*n_t=12.*--settings"):
        plot_run(run_dir, formats=("png",))
    with pytest.raises(InputError, match="mixes 2 analysis settings"):
        evaluate_claims(table, load_rollback(run_dir, missing_ok=True), 0, 4)
    assert main(["plot", str(run_dir), "--settings", "n_t=12", "--formats", "png", "--metrics", "capacity"]) == 0

    selected = select_settings(table, n_t=10)
    claims = evaluate_claims(selected, load_rollback(run_dir, missing_ok=True), 0, 4)
    assert claims["settings"] == {"key": selected["settings"].iloc[0], "kappa": 0.0, "n_t": 10, "n_reps": 1,
                                  "seed": 0, "probe_C": None, "probe_folds": None}
    written = plot_run(run_dir, formats=("png",), settings={"n_t": 10}, metrics=["capacity"])
    assert {path.stem for path in written} >= {"heatmap_capacity", "layer_profiles"}


def test_non_finite_cache_entry_is_an_error_record_retried_and_reported(tiny_cached_run, tmp_path):
    run_dir = _copy(tiny_cached_run, tmp_path / "a")
    entry = "epoch_0004/logits/test"  # the test examples' rows (format 2): only the test cell reads them
    with h5py.File(run_dir / "activations.h5", "r+") as handle:
        original = handle[entry][()]
        handle[entry][0, 0] = np.nan
    seen = []
    with pytest.raises(DataFileError, match=r"epoch 4, layer 'logits', subset 'test'.*non-finite.*"
                                            r"mftma cache .* --rebuild"):
        analyze_run(run_dir, processes=False, n_workers=1, on_cell_done=seen.append, **FAST)
    assert sum("error" in record for record in seen) == 1 and len(seen) == 10
    saved = load_results(run_dir)
    assert len(saved[["epoch", "subset"]].drop_duplicates()) == 9
    assert not ((saved["epoch"] == 4) & (saved["subset"] == "test")).any()

    seen.clear()
    with h5py.File(run_dir / "activations.h5", "r+") as handle:
        handle[entry][...] = original
    table = analyze_run(run_dir, processes=False, n_workers=1, on_cell_done=seen.append, **FAST)
    assert [record["cell"]["subset"] for record in seen] == ["test"] and "error" not in seen[0]
    assert len(table) == 10 * GEOMETRY_METRICS_PER_CELL and np.isfinite(table["value"]).all()
