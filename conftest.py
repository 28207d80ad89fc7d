"""Fixtures of the docstring examples in mftma/ (those of the tests are in tests/conftest.py)."""
import pytest

# A deprecated re-export with no examples: importing it only to look for doctests would warn
# (tests/test_public_api.py checks the warning and the names it keeps).
collect_ignore = ["mftma/pipeline/results.py"]


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    """The shipped ``tiny`` config trained (epochs 0-4) and cached: the run directory the examples use."""
    from mftma.cache import cache_activations
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    run = train(load_config("tiny"), tmp_path_factory.mktemp("examples") / "run", progress=False)
    cache_activations(run, progress=False)
    return run.path


@pytest.fixture(autouse=True)
def _example_run_dir(request, doctest_namespace):
    """Docstring examples that use ``run_dir`` get the tiny run's directory (made once, on first use)."""
    example = getattr(request.node, "dtest", None)
    if example is not None and any("run_dir" in step.source for step in example.examples):
        doctest_namespace["run_dir"] = request.getfixturevalue("tiny_run_dir")
