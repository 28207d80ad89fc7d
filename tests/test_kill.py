"""SIGKILL `mftma analyze` and `mftma rollback` at a random moment: the rerun gives the uninterrupted table."""
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd

from mftma.names import SUBSETS
from mftma.results.table import METRICS, load_results
from mftma.pipeline.rollback import load_rollback, load_rollback_geometry

ROOT = pathlib.Path(__file__).resolve().parents[1]
ANALYZE = ["analyze", "--epochs", "0", "4", "--layers", "input", "logits", "--n-t", "10", "--n-reps", "1",
           "--workers", "1", "--no-progress"]
ROLLBACK = ["rollback", "--k", "1", "2", "--epochs", "0", "2", "--geometry", "--layers", "logits", "--n-t", "10",
            "--n-reps", "1", "--no-plot", "--no-progress"]


def _command(arguments, run_dir):
    return [sys.executable, "-m", "mftma.cli", arguments[0], str(run_dir), *arguments[1:]]


def _environment():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _complete(arguments, run_dir) -> float:
    """Run the command to completion; return its duration in seconds."""
    began = time.perf_counter()
    subprocess.run(_command(arguments, run_dir), env=_environment(), check=True, capture_output=True)
    return time.perf_counter() - began


def _killed(arguments, run_dir, delay: float) -> None:
    """Start the command and SIGKILL it (with its worker processes) after ``delay`` seconds."""
    process = subprocess.Popen(_command(arguments, run_dir), env=_environment(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _interrupted_and_uninterrupted(arguments, source, tmp_path):
    """(killed-then-rerun run directory, uninterrupted run directory, kill delay): one random kill."""
    reference, interrupted = (shutil.copytree(source, tmp_path / name / "run") for name in ("reference", "killed"))
    duration = _complete(arguments, reference)
    delay = random.uniform(0.0, duration)
    _killed(arguments, interrupted, delay)
    _complete(arguments, interrupted)
    return interrupted, reference, delay


def test_killed_analysis_reruns_to_the_uninterrupted_table(tiny_cached_run, tmp_path):
    interrupted, reference, delay = _interrupted_and_uninterrupted(ANALYZE, tiny_cached_run, tmp_path)
    expected = load_results(reference)
    # 2 epochs x 2 layers x every subset, each cell with every metric but the transfer accuracy, which only
    # the 4 test cells have
    assert len(expected) == 4 * len(SUBSETS) * (len(METRICS) - 1) + 4
    pd.testing.assert_frame_equal(load_results(interrupted), expected, check_exact=True,
                                  obj=f"table after a kill at {delay:.2f} s")


def test_killed_rollback_reruns_to_the_uninterrupted_tables(tiny_cached_run, tmp_path):
    interrupted, reference, delay = _interrupted_and_uninterrupted(ROLLBACK, tiny_cached_run, tmp_path)
    for load, rows in ((load_rollback, 2 * 2 * 3 * 4), (load_rollback_geometry, 2 * 2 * 3 * len(SUBSETS) * 3)):
        expected = load(reference)
        assert len(expected) == rows  # 2 epochs x 2 directions x k in {0, 1, 2} x 4 subsets (geometry: every subset x 3 metrics)
        pd.testing.assert_frame_equal(load(interrupted), expected, check_exact=True,
                                      obj=f"{load.__name__} after a kill at {delay:.2f} s")
