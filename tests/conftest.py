import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "golden"


@pytest.fixture(scope="session")
def golden():
    """The reference MFTMA outputs in ../shared/golden (skips when they are not beside the checkout)."""
    npz = GOLDEN_DIR / "mftma_reference.npz"
    if not npz.exists():
        pytest.skip(f"golden reference outputs not found at {GOLDEN_DIR}")
    import json

    return np.load(npz), json.loads((GOLDEN_DIR / "mftma_reference.json").read_text())


@pytest.fixture
def rng():
    return np.random.default_rng(0)
