"""Work spread over the threads numba may use, for compiled functions that release the GIL."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba


def map_in_threads(function, count: int, desc: str = "", progress: bool = False) -> list:
    """``[function(i) for i in range(count)]`` in parallel threads, with an optional progress bar.

    As many threads as numba may use here (1 inside a single-threaded Dask task); meant for functions
    that spend their time in compiled code without the GIL, with a single-threaded BLAS (as
    :func:`~mftma.estimator.analysis.analyze_manifolds` sets up). The results do not depend on the
    number of threads.
    """
    from mftma.progress import progress_bar

    with ThreadPoolExecutor(numba.get_num_threads()) as pool:
        return list(progress_bar(pool.map(function, range(count)), total=count, desc=desc, enabled=progress))
