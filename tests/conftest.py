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
