"""The analysis compiles the estimator's numba kernels once in the parent, before its workers start."""
import numpy as np

from mftma.estimator import anchor, correlation
from mftma.estimator.backends import numba_cpu
from mftma.pipeline import analyze

ESTIMATOR = {"kappa": 0.0, "n_t": 50, "n_reps": 2, "seed": 0, "explained_variance": 0.9}


def compiled_signatures() -> dict:
    """Every numba dispatcher of the estimator's modules -> the signatures compiled (or loaded) so far."""
    return {f"{module.__name__}.{name}": list(value.signatures)
            for module in (anchor, correlation, numba_cpu)
            for name, value in vars(module).items() if hasattr(value, "signatures")}


def test_warm_up_compiles_every_kernel_a_cell_uses():
    analyze.warm_up_kernels(ESTIMATOR)
    warmed = compiled_signatures()
    assert any(warmed.values())
    rng = np.random.default_rng(1)
    for shape in ((8, 60, 15), (8, 10, 15)):  # cells larger than the warm-up inputs, N > M and N < M
        analyze._geometry(list(rng.standard_normal(shape).astype(np.float32)), ESTIMATOR)
    assert compiled_signatures() == warmed
