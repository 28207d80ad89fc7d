"""The README's Python examples run as written (on the tiny run where they name the default run)."""
import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> dict[int, str]:
    """README python blocks keyed by the line of their opening fence."""
    text = README.read_text()
    return {text[:match.start()].count("\n") + 1: match.group(1)
            for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)}


def _block(containing: str) -> str:
    [block] = [block for block in _python_blocks().values() if containing in block]
    return block


def test_every_python_block_is_exercised_here():
    heads = sorted(block.splitlines()[0] for block in _python_blocks().values())
    assert heads == sorted([
        "import numpy as np", "from mftma.experiments.run import Run", "from mftma.cache import ActivationCache",
        "from mftma.results.table import load_results, select_settings",
        "from mftma.pipeline.rollback import rollback, load_rollback",
        "from mftma import load_config, RunConfig, train, Run           # a run: config, training, reading it back",
    ])


def test_estimator_example_gives_the_numbers_its_comments_state():
    namespace = {}
    lines = _block("analyze_manifolds(manifolds").splitlines()
    exec("\n".join(lines), namespace)
    result = namespace["result"]
    # The comment on the averages: ~0.040, ~1.47, ~36.2.
    assert result.capacity_avg == pytest.approx(0.040, abs=0.0005)
    assert result.radius_avg == pytest.approx(1.47, abs=0.005)
    assert result.dimension_avg == pytest.approx(36.2, abs=0.05)
    fitted = eval("ManifoldAnalysis(seed=0).fit(manifolds)", namespace)
    assert fitted.capacity_avg_ == result.capacity_avg


@pytest.fixture(scope="module")
def run_dir(tiny_cached_run, tmp_path_factory):
    """A copy of the tiny run, analysed with the default n_t so the examples' selections find rows."""
    from mftma.pipeline.analyze import analyze_run

    path = tmp_path_factory.mktemp("readme") / "mnist1d"
    shutil.copytree(tiny_cached_run, path)
    analyze_run(path, n_t=200, n_reps=1, probes=False, processes=False, n_workers=1, progress=False)
    return path


@pytest.mark.parametrize("containing, replacements", [
    ("run.load_model(run.best_epoch())", {'["conv3", "logits"]': '["fc1", "logits"]'}),
    ("with ActivationCache(", {"(60, ": "(4, ", '"conv3"': '"logits"'}),
    ("select_settings(table, n_t=200)", {}),
    ("rollback(\"runs/mnist1d\"", {"epochs=[8]": "epochs=[0]"}),
    ("from mftma import load_config", {}),
])
def test_run_examples_work_on_a_run_directory(run_dir, monkeypatch, containing, replacements):
    code = _block(containing)
    for old, new in replacements.items():
        assert old in code
        code = code.replace(old, new)
    monkeypatch.chdir(run_dir.parent.parent)
    code = code.replace('"runs/mnist1d"', repr(str(run_dir)))
    exec(code, {})
