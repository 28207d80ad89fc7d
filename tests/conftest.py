import os

import numpy as np
import pytest
from golden_compact import load_compact

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def golden():
    """The reference MFTMA outputs as ``(arrays, meta)``, from the compact copy in tests/data/golden."""
    return load_compact()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_cached_run(tmp_path_factory):
    """The shipped tiny config (MLP, 10 classes, M = 5) trained for 4 epochs, epochs 0 and 4 of layers input and logits cached.

    Shared by the whole session: copy it (``shutil.copytree``) before writing into it.
    """
    from mftma.cache.writer import cache_activations
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    run = train(load_config("tiny"), tmp_path_factory.mktemp("tiny") / "tiny", progress=False)
    cache_activations(run, epochs=[0, 4], layers=["input", "logits"], progress=False)
    return run.path
