"""Smoke test of benchmarks/bench_paper_scale.py: its ``--quick`` run prints the JSON the README cites."""
import json
import subprocess
import sys
from pathlib import Path

from mftma.names import SUBSETS

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_paper_scale.py"
TARGETS = {"caching_one_checkpoint_sparse_over_forward_pass", "one_cell_s_mftma_plus_torch_probe",
           "full_config_cache_bytes_sparse", "full_grid_s_on_gpu"}


def test_quick_run_reports_measurements_extrapolation_and_targets():
    result = subprocess.run([sys.executable, str(BENCHMARK), "--quick"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"forward", "caching", "cell", "grid", "targets", "size", "machine"} <= set(report)
    assert set(report["caching"]) == {"sparse", "gaussian"}
    for caching in report["caching"].values():
        assert caching["file_bytes"] > caching["input_layer_bytes"] > 0
        assert caching["over_forward_pass"] > 0
    assert {"sklearn_probe", "torch_probe"} <= set(report["cell"])
    assert report["cell"]["features"] == report["size"]["projection_dim"]  # conv1 is projected
    size, grid = report["size"], report["grid"]
    assert size["dtype"] == "float16"  # the paper config's storage type, which the disk target counts
    assert grid["cells"] == len(size["layers"]) * grid["checkpoints"] * len(SUBSETS)
    assert set(report["targets"]) == TARGETS
    for name, target in report["targets"].items():
        assert {"value", "target", "met"} <= set(target)
        if target["value"] is not None:
            assert target["met"] == (target["value"] <= target["target"]), name
            missed = {"missed_by_factor", "why"} & set(target)
            assert missed == (set() if target["met"] else {"missed_by_factor", "why"}), name
            if not target["met"]:
                assert target["missed_by_factor"] == target["value"] / target["target"] > 1
    assert report["targets"]["full_config_cache_bytes_sparse"]["value"] == grid["cache_bytes"]
