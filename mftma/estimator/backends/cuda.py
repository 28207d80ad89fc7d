"""The ``cuda`` backend: the active set of :mod:`.numba_cpu` in numba.cuda kernels, one thread per t vector.

The solver is the same Python source, :func:`~mftma.estimator.backends.numba_cpu.nnls_gram`, compiled as
a device function; the problems are packed the same way (Gram matrices once per manifold, flat arrays
with offsets). Each thread solves one (manifold, t vector) item with its own scratch rows in global
memory; items are launched in batches so that the scratch stays under :data:`SCRATCH_BYTES`.
Without a GPU the kernels run under numba's simulator (``NUMBA_ENABLE_CUDASIM=1``), slowly.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from mftma.estimator.backends.numba_cpu import nnls_gram, pack_problems, repair_unconverged, unpack_residuals

#: Threads per block.
THREADS_PER_BLOCK = 64
#: Upper bound on the per-batch scratch memory on the device.
SCRATCH_BYTES = 512 * 2**20

_nnls_gram_device = cuda.jit(device=True)(nnls_gram)


@cuda.jit
def _solve_items(gram, gram_offset, sizes, rhs, start, rhs_offset, item_manifold, t_norm, alpha, status,
                 first, lower, vectors, order, state):
    slot = cuda.grid(1)
    item = first + slot
    if slot < lower.shape[0] and item < item_manifold.size:
        p = item_manifold[item]
        status[item] = _nnls_gram_device(
            gram, gram_offset[p], sizes[p], rhs, start, rhs_offset[item], t_norm[item], alpha,
            lower[slot], vectors[slot, 0], vectors[slot, 1], vectors[slot, 2],
            vectors[slot, 3], order[slot], state[slot],
        )


def solve_cone_projections(points, t_vecs, kappa=0.0):
    """``t - v = S @ alpha`` for every t vector of every manifold, on a CUDA GPU.

    Parameters
    ----------
    points : list of ndarray, each (D_p+1, M_p)
        Processed manifolds (last row all ones), float64.
    t_vecs : list of ndarray, each (D_p+1, n_t)
        Gaussian t vectors of each manifold.
    kappa : float
        Margin, >= 0.

    Returns
    -------
    list of ndarray, each (D_p+1, n_t)
        ``S @ alpha`` with ``alpha`` the optimal multipliers.
    """
    kappa = float(kappa)
    packed = pack_problems(points, t_vecs, kappa)
    n_items = packed.item_manifold.size
    largest = int(packed.sizes.max())
    factor_size = largest * (largest + 1) // 2
    per_item = 8 * (factor_size + 6 * largest)
    batch = int(min(n_items, max(1, SCRATCH_BYTES // per_item)))
    device_inputs = [cuda.to_device(array) for array in packed]
    alpha = cuda.device_array(packed.rhs.shape, dtype=np.float64)
    status = cuda.device_array(n_items, dtype=np.int64)
    scratch = (
        cuda.device_array((batch, factor_size), dtype=np.float64),
        cuda.device_array((batch, 4, largest), dtype=np.float64),
        cuda.device_array((batch, largest), dtype=np.int64),
        cuda.device_array((batch, largest), dtype=np.int64),
    )
    blocks = (batch + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    for first in range(0, n_items, batch):
        _solve_items[blocks, THREADS_PER_BLOCK](*device_inputs, alpha, status, first, *scratch)
    alpha = alpha.copy_to_host()
    repair_unconverged(points, t_vecs, kappa, packed, alpha, status.copy_to_host())
    return unpack_residuals(points, t_vecs, alpha)
