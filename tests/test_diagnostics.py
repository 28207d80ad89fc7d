"""Bias diagnostics, manifold loading, and the `mftma diagnose` / `mftma simcap` commands."""
import json

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from figure_checks import distinct_colours

from mftma.cli import main
from mftma.errors import DataFileError, InputError
from mftma.estimator.diagnostics import diagnose
from mftma.pipeline.manifold_sources import layer_width, load_manifolds
from mftma.estimator.synthetic import synthetic_manifolds

TINY = {"n_t_values": (20, 40), "n_t": 40, "n_seeds": 2, "n_reps": 1}


@pytest.fixture(scope="module")
def clouds():
    """Unstructured clouds: capacity ~ 2/M, so subsampling M must show a large change."""
    return synthetic_manifolds("random", 4, 30, 12, seed=0)


@pytest.fixture(scope="module")
def report(clouds):
    return diagnose(clouds, **TINY)


def test_sweeps_cover_the_default_settings(report):
    settings = report.table.groupby("factor", sort=False)["setting"].unique()
    assert list(settings["M"]) == [3, 6, 12]
    assert list(settings["n_t"]) == [20, 40]
    assert list(settings["projection"]) == [3, 7, 15, 30]
    assert len(report.runs) == (3 + 2 + 4) * 2
    assert (report.table["n_seeds"] == 2).all()
    assert ((report.table["ci_low"] <= report.table["mean"]) & (report.table["mean"] <= report.table["ci_high"])).all()


def test_finite_m_bias_is_reported(report):
    capacity = report.table.query("factor == 'M' and metric == 'capacity'").set_index("setting")["mean"]
    assert capacity[6] > 1.5 * capacity[12]  # ~2/M
    assert "from M=6 to M=12" in report.verdicts[0]
    assert "more samples per manifold would change the answer" in report.verdicts[0]
    assert report.verdicts[1].startswith("at n_t=40 the sampling error")


def test_deterministic_given_seed(clouds, report):
    again = diagnose(clouds, **TINY)
    pd.testing.assert_frame_equal(again.table, report.table)
    assert again.verdicts == report.verdicts


def test_readable_table_has_one_row_per_setting(report):
    readable = report.readable()
    assert list(readable.columns) == ["factor", "setting", "capacity", "radius", "dimension"]
    assert len(readable) == 9 and "+-" in readable.loc[0, "capacity"]


def test_save_csv_and_json(report, tmp_path):
    table = pd.read_csv(report.save(tmp_path / "diagnosis.csv"))
    assert len(table) == len(report.table)
    saved = json.loads(report.save(tmp_path / "diagnosis.json").read_text())
    assert saved["verdicts"] == report.verdicts and saved["settings"]["n_seeds"] == 2
    with pytest.raises(InputError, match=".csv or .json"):
        report.save(tmp_path / "diagnosis.txt")


def test_diagnose_rejects_a_single_seed_and_settings_out_of_range(clouds):
    with pytest.raises(InputError, match="n_seeds"):
        diagnose(clouds, n_seeds=1)
    with pytest.raises(InputError, match="sample_counts needs at least one value between 2 and 12"):
        diagnose(clouds, sample_counts=[20, 40])
    with pytest.raises(InputError, match="projection_dims"):
        diagnose(clouds, projection_dims=[1, 64])


def test_load_manifolds_from_npz_and_h5(clouds, tmp_path):
    np.savez(tmp_path / "named.npz", manifolds=clouds, other=np.zeros(3))
    np.savez(tmp_path / "single.npz", layer=clouds)
    with h5py.File(tmp_path / "layer.h5", "w") as h5:
        h5["manifolds"] = clouds
    for name in ("named.npz", "single.npz", "layer.h5"):
        manifolds, origin = load_manifolds(tmp_path / name)
        assert len(manifolds) == 4 and manifolds[0].shape == (30, 12) and name in origin


def test_load_manifolds_errors(tmp_path):
    np.savez(tmp_path / "ambiguous.npz", a=np.zeros((2, 3, 4)), b=np.zeros((2, 3, 4)))
    with pytest.raises(DataFileError, match="name the"):
        load_manifolds(tmp_path / "ambiguous.npz")
    with pytest.raises(DataFileError, match="does not exist"):
        load_manifolds(tmp_path / "missing.npz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="expected a run directory"):
        load_manifolds(tmp_path / "notes.txt")
    (tmp_path / "broken.npz").write_text("not a zip")
    with pytest.raises(DataFileError, match="not a readable"):
        load_manifolds(tmp_path / "broken.npz")


def test_diagnose_command(clouds, tmp_path, capsys):
    np.savez(tmp_path / "layer.npz", manifolds=clouds)
    output = tmp_path / "diagnosis.json"
    arguments = ["diagnose", str(tmp_path / "layer.npz"), "--n-t-values", "20", "40", "--n-t", "40",
                 "--n-seeds", "2", "--n-reps", "1", "--no-progress", "--out", str(output)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "more samples per manifold would change the answer" in printed
    assert json.loads(output.read_text())["settings"]["P"] == 4


def test_simcap_command(tmp_path, capsys):
    balls = synthetic_manifolds("ball", 8, 40, 4, radius=0.5, dimension=3, seed=1)
    np.savez(tmp_path / "layer.npz", manifolds=balls)
    output = tmp_path / "simcap.json"
    arguments = ["simcap", str(tmp_path / "layer.npz"), "--precision", "0.2", "--n-t", "400", "--n-reps", "1",
                 "--jobs", "1", "--no-progress", "--out", str(output)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "simulated capacity" in printed and "mean-field capacity" in printed
    record = json.loads(output.read_text())
    assert record["simulated"]["alpha"] == pytest.approx(record["mean_field"]["capacity"], rel=0.3)


def test_commands_report_missing_input(tmp_path, capsys):
    assert main(["simcap", str(tmp_path / "missing.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command, out", [("diagnose", "diagnosis.txt"), ("simcap", "simcap.csv")])
def test_commands_check_the_output_name_before_reading_anything(tmp_path, capsys, command, out):
    # The source does not exist: the output name is refused first, before any work.
    assert main([command, str(tmp_path / "missing.npz"), "--out", str(tmp_path / out)]) == 1
    error = capsys.readouterr().err
    assert out in error and "does not exist" not in error


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory):
    """The shipped tiny config (MLP, 10 classes, M = 5) trained for 4 epochs, epoch 4 of fc1 cached."""
    from mftma.cache.writer import cache_activations
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    run = train(load_config("tiny"), tmp_path_factory.mktemp("trust") / "tiny", progress=False)
    cache_activations(run, epochs=[4], layers=["fc1"], subsets=["unpermuted"], progress=False)
    return run.path


def test_load_manifolds_from_a_run_directory(cached_run):
    manifolds, origin = load_manifolds(cached_run)
    assert len(manifolds) == 10 and manifolds[0].shape[1] == 5
    assert origin.endswith("epoch 4, layer fc1, subset unpermuted")
    with pytest.raises(InputError, match="unknown layer"):
        load_manifolds(cached_run, layer="fc9")


def test_validation_figure_runs_on_a_run_directory(cached_run, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "analysis" / "fig_capacity_validation.py"
    command = [sys.executable, str(script), str(cached_run), "--precision", "0.25", "--n-t", "50", "--jobs", "1",
               "--formats", "png", "--out", str(tmp_path)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert distinct_colours(plt.imread(tmp_path / "capacity_validation.png")) > 20  # a drawing, not a blank canvas
    table = pd.read_csv(tmp_path / "capacity_validation.csv")
    assert list(table[["epoch", "layer", "subset"]].itertuples(index=False, name=None)) == [(4, "fc1", "unpermuted")]
    assert table.loc[0, "ci_low"] <= table.loc[0, "simulated"] <= table.loc[0, "ci_high"]
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "->" not in rerun.stdout  # every cell was reused


@pytest.mark.parametrize("M, expected", [(50, "fc1"), (100, "conv3")])
def test_default_layer_is_the_deepest_wide_enough_to_simulate(M, expected):
    from mftma.pipeline.manifold_sources import default_layer

    widths = {"input": 40, "conv3": 300, "fc1": 256, "logits": 10}
    entries = pd.DataFrame([
        {"epoch": epoch, "layer": layer, "layer_index": index, "subset": "test", "N": N, "P": 10, "M": M,
         "complete": True}
        for epoch in (0, 5) for index, (layer, N) in enumerate(widths.items())
    ])
    # P * M / 2 = 250 features: fc1 is the deepest layer that wide; at M = 100 none is, so the widest.
    assert default_layer(entries, 5, "test") == expected
    assert default_layer(entries, 7, "test") is None


def test_no_larger_projection_is_advised_for_a_layer_given_whole():
    manifolds = np.random.default_rng(0).standard_normal((4, 30, 12))
    settings = dict(sample_counts=[12], n_t_values=(20,), projection_dims=(8, 30), n_t=20, n_seeds=2, n_reps=1)
    unknown = diagnose(manifolds, **settings).verdicts[2]
    whole = diagnose(manifolds, layer_width=30, **settings).verdicts[2]
    projected = diagnose(manifolds, layer_width=640, **settings).verdicts[2]
    assert "a larger projection" in unknown and projected == unknown
    assert "no larger projection exists" in whole and "larger projection)" not in whole


def test_layer_width_is_the_cached_layers_width_before_projection(cached_run, tmp_path):
    assert layer_width(cached_run) == 32  # the tiny MLP's fc1, cached whole (projection_dim 64)
    np.savez(tmp_path / "m.npz", manifolds=np.zeros((2, 3, 4)))
    assert layer_width(tmp_path / "m.npz") is None


def test_default_layer_skips_entries_dropped_by_streaming():
    import pandas as pd

    from mftma.pipeline.manifold_sources import default_layer

    entries = pd.DataFrame({"epoch": 4, "layer": ["fc1", "fc2"], "layer_index": [1, 2], "subset": "unpermuted",
                            "N": 64, "P": 10, "M": 5, "complete": True, "dropped": [False, True]})
    assert default_layer(entries, 4, "unpermuted") == "fc1"
    assert default_layer(entries.drop(columns="dropped"), 4, "unpermuted") == "fc2"
