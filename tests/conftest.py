import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

#: The reference outputs: $MFTMA_GOLDEN_DIR, else ../shared/golden beside the checkout.
GOLDEN_DIR = pathlib.Path(
    os.environ.get("MFTMA_GOLDEN_DIR", pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "golden")
)


@pytest.fixture(scope="session")
def golden():
    """The reference MFTMA outputs in GOLDEN_DIR (skips, saying where it looked, when they are absent)."""
    npz = GOLDEN_DIR / "mftma_reference.npz"
    if not npz.exists():
        pytest.skip(f"golden reference outputs not found at {GOLDEN_DIR} (set MFTMA_GOLDEN_DIR)")
    import json

    return np.load(npz), json.loads((GOLDEN_DIR / "mftma_reference.json").read_text())


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_cached_run(tmp_path_factory):
    """The shipped tiny config trained for 4 epochs, epochs 0 and 4 of layers input and logits cached.

    Shared by the whole session: copy it (``shutil.copytree``) before writing into it.
    """
    from mftma.cache.writer import cache_activations
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    run = train(load_config("tiny"), tmp_path_factory.mktemp("tiny") / "run", progress=False)
    cache_activations(run, epochs=[0, 4], layers=["input", "logits"], progress=False)
    return run.path
