"""Memory-safe reduction of large layers: optional per-channel pooling, then a seeded random projection.

Why a Gaussian random projection
--------------------------------
MFTMA measures the geometry of P·M points (a few thousand). A Gaussian matrix ``W`` with i.i.d.
``N(0, 1/d_out)`` entries preserves the squared norms of, and inner products between, a fixed set of points
up to relative errors of order ``1/sqrt(d_out)`` (Johnson–Lindenstrauss), whatever the layer size. With
``d_out = 5000`` ≫ the intrinsic dimension of the P·M points, capacity, radius and dimension are
preserved closely, as in Cohen et al. (2020) and Stephenson et al. (2021), who project large layers the
same way. A fixed seed per (cache seed, layer name) makes the matrix identical at every epoch, so changes
across epochs come from the network and not from the projection.

Why blocks
----------
A layer with ``d_in = 10^6`` features would need a ``10^6 × 5000`` matrix (20 GB). Instead ``W`` is
defined row block by row block: block ``b`` (rows ``b·BLOCK_ROWS`` to ``(b+1)·BLOCK_ROWS``) is drawn from
its own counter-based stream ``SeedSequence([seed, crc32(layer)], spawn_key=(b,))``, so any block can be
regenerated on its own, and ``x @ W = Σ_b x[:, rows_b] @ W_b`` is accumulated one block at a time. Memory
is one batch of activations plus a few blocks plus the (batch, d_out) output. Blocks of matrices no larger
than ``cache_bytes`` are kept for reuse across batches; larger matrices are regenerated per batch. Blocks
are drawn and multiplied in parallel threads, and their products summed in block order, so the result is
bitwise the same whether blocks are kept or regenerated and whatever the number of threads.

Sparse sign projection (``projection: sparse``)
-----------------------------------------------
Drawing and multiplying by the dense matrix costs O(d_in · d_out) per example (seconds per batch for a
VGG-16 first block). :class:`SparseSignProjection` is a block sparse Johnson–Lindenstrauss transform
(Kane & Nelson 2014): the ``d_out`` outputs are split into ``q`` = :data:`SPARSE_NONZEROS` contiguous blocks
and every input feature is added, with a random sign and weight ``1/sqrt(q)``, to one random output of each
block. Each block is a CountSketch, so squared norms and inner products are unbiased and their variance is
at most the Gaussian's ``2‖x‖⁴/d_out``, whatever the data's sparsity; it costs O(d_in · q) per example
and ``d_in · q`` stored entries. The matrix is drawn once per layer from the stream
``SeedSequence([seed, crc32(layer), SPARSE_STREAM])`` and applied as a scipy CSR product, whose sums run in a
fixed order (one thread), so each example's output is bitwise independent of batch size and thread count.

Devices
-------
:meth:`RandomProjection.project` and :meth:`SparseSignProjection.project` take a torch batch on any device:
on the CPU they run the numpy/scipy paths above; elsewhere the same matrix (drawn on the CPU) is applied by
torch on the batch's device, equal to the CPU result up to float rounding.
"""
from __future__ import annotations

import os
import warnings
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
from threadpoolctl import threadpool_limits

from mftma.errors import InputError
from mftma.experiments.config import PROJECTIONS

#: Rows of ``W`` drawn per block; part of the matrix's definition (changing it changes the matrix).
BLOCK_ROWS = 512

#: Default budget for keeping a projection matrix in memory between batches.
DEFAULT_CACHE_BYTES = 256 * 2**20

#: Threads drawing projection blocks and multiplying by them (numpy releases the GIL for both).
PROJECTION_THREADS = min(8, os.cpu_count() or 1)


#: Nonzeros per input feature of the sparse sign projection (one per output block); part of its definition.
SPARSE_NONZEROS = 8

#: Extra entropy word separating the sparse projection's stream from the Gaussian blocks' streams.
SPARSE_STREAM = 0x5350

def layer_seed(seed: int, layer: str) -> list[int]:
    """Entropy of a layer's projection matrix: the cache seed and a stable checksum of the layer name."""
    return [int(seed), zlib.crc32(layer.encode("utf-8"))]


class RandomProjection:
    """Seeded Gaussian random projection ``x -> x @ W``, ``W`` of shape (in_features, out_features).

    Parameters
    ----------
    in_features, out_features : int
        Input and output dimensions.
    entropy : list of int
        Seed of the matrix (see :func:`layer_seed`).
    cache_bytes : int, optional
        Keep the generated blocks between calls when the whole matrix takes at most this many bytes.

    Examples
    --------
    >>> proj = RandomProjection(2000, 10, layer_seed(0, "conv1"))
    >>> proj(np.ones((3, 2000), dtype=np.float32)).shape
    (3, 10)
    """

    def __init__(self, in_features: int, out_features: int, entropy: list[int],
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        if in_features < 1 or out_features < 1:
            raise InputError(f"projection dimensions must be positive, got {in_features} -> {out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.entropy = list(entropy)
        self._keep_blocks = 4 * self.in_features * self.out_features <= cache_bytes
        self._blocks: dict[int, np.ndarray] = {}

    @property
    def n_blocks(self) -> int:
        return -(-self.in_features // BLOCK_ROWS)

    def block(self, index: int) -> np.ndarray:
        """Rows ``index·BLOCK_ROWS ...`` of ``W`` as float32, drawn from the block's own stream."""
        if index in self._blocks:
            return self._blocks[index]
        rows = min(BLOCK_ROWS, self.in_features - index * BLOCK_ROWS)
        stream = np.random.default_rng(np.random.SeedSequence(self.entropy, spawn_key=(index,)))
        block = stream.standard_normal((rows, self.out_features), dtype=np.float32)
        block *= np.float32(1.0 / np.sqrt(self.out_features))
        if self._keep_blocks:
            self._blocks[index] = block
        return block

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Project a batch ``x`` of shape (batch, in_features); returns float32 (batch, out_features)."""
        _check_batch(x, self.in_features)
        out = np.zeros((x.shape[0], self.out_features), dtype=np.float32)
        # The per-block products are small: one BLAS thread each beats several, which mostly wait on each
        # other (up to 100x slower on a busy machine); the blocks run in parallel instead.
        with threadpool_limits(1, user_api="blas"):
            for product in self._block_products(x):
                out += product
        return out

    def _block_products(self, x: np.ndarray):
        """``x[:, rows_b] @ W_b`` for every block ``b``, in order, computed up to :data:`PROJECTION_THREADS`
        blocks ahead by as many threads (drawing a block costs about as much as its product).

        Summed in block order, the products give bitwise the result of a serial loop, whatever the thread
        count. At most ``PROJECTION_THREADS + 1`` blocks are in memory at once.
        """

        def product(index):
            start = index * BLOCK_ROWS
            # a contiguous copy of the slice keeps numpy on the BLAS path
            return np.ascontiguousarray(x[:, start:start + BLOCK_ROWS]) @ self.block(index)

        with ThreadPoolExecutor(PROJECTION_THREADS) as pool:
            pending = deque()
            for index in range(self.n_blocks):
                pending.append(pool.submit(product, index))
                if len(pending) > PROJECTION_THREADS:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def matrix(self) -> np.ndarray:
        """The whole matrix ``W`` (for tests and small layers only: it is in_features × out_features)."""
        return np.concatenate([self.block(index) for index in range(self.n_blocks)])

    def project(self, batch: torch.Tensor) -> np.ndarray:
        """Project a (batch, in_features) float32 tensor on its device; returns a float32 numpy array.

        On the CPU this is :meth:`__call__`; on another device each block is copied there and the products
        are summed in block order.
        """
        return self(batch.numpy()) if batch.device.type == "cpu" else self._torch(batch).cpu().numpy()

    def _torch(self, batch: torch.Tensor) -> torch.Tensor:
        """The projection by torch on ``batch``'s device (the path of GPUs; also runs on the CPU)."""
        _check_batch(batch, self.in_features)
        out = torch.zeros((batch.shape[0], self.out_features), dtype=torch.float32, device=batch.device)
        for index in range(self.n_blocks):
            start = index * BLOCK_ROWS
            out += batch[:, start:start + BLOCK_ROWS] @ torch.from_numpy(self.block(index)).to(batch.device)
        return out


class SparseSignProjection:
    """Seeded block sparse sign projection ``x -> x @ S``, ``S`` of shape (in_features, out_features).

    Row ``i`` of ``S`` has one nonzero ``±1/sqrt(q)`` in each of ``q = min(SPARSE_NONZEROS, out_features)``
    contiguous blocks of columns (see the module docstring).

    Parameters
    ----------
    in_features, out_features : int
        Input and output dimensions.
    entropy : list of int
        Seed of the matrix (see :func:`layer_seed`).

    Examples
    --------
    >>> proj = SparseSignProjection(2000, 10, layer_seed(0, "conv1"))
    >>> proj(np.ones((3, 2000), dtype=np.float32)).shape
    (3, 10)
    """

    def __init__(self, in_features: int, out_features: int, entropy: list[int]):
        if in_features < 1 or out_features < 1:
            raise InputError(f"projection dimensions must be positive, got {in_features} -> {out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.entropy = list(entropy)
        self.nonzeros = min(SPARSE_NONZEROS, self.out_features)
        self._sparse = self._draw()
        self._on_device: dict[torch.device, torch.Tensor] = {}

    def _draw(self) -> scipy.sparse.csr_matrix:
        stream = np.random.default_rng(np.random.SeedSequence([*self.entropy, SPARSE_STREAM]))
        bounds = np.linspace(0, self.out_features, self.nonzeros + 1).astype(np.int64)
        shape = (self.in_features, self.nonzeros)
        columns = bounds[:-1] + stream.integers(0, np.diff(bounds), size=shape)
        signs = np.where(stream.integers(0, 2, size=shape) == 1, 1.0, -1.0) / np.sqrt(self.nonzeros)
        rows = np.arange(0, columns.size + 1, self.nonzeros)
        return scipy.sparse.csr_matrix((signs.astype(np.float32).ravel(), columns.ravel(), rows),
                                       shape=(self.in_features, self.out_features))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Project a batch ``x`` of shape (batch, in_features); returns float32 (batch, out_features)."""
        _check_batch(x, self.in_features)
        return np.ascontiguousarray(np.asarray(x, dtype=np.float32) @ self._sparse, dtype=np.float32)

    def project(self, batch: torch.Tensor) -> np.ndarray:
        """Project a (batch, in_features) float32 tensor on its device; returns a float32 numpy array."""
        return self(batch.numpy()) if batch.device.type == "cpu" else self._torch(batch).cpu().numpy()

    def _torch(self, batch: torch.Tensor) -> torch.Tensor:
        """The projection by torch on ``batch``'s device (the path of GPUs; also runs on the CPU)."""
        _check_batch(batch, self.in_features)
        if batch.device not in self._on_device:
            transposed = self._sparse.T.tocsr()
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the product is all we use
                warnings.simplefilter("ignore", UserWarning)
                self._on_device[batch.device] = torch.sparse_csr_tensor(
                    torch.from_numpy(transposed.indptr.astype(np.int64)),
                    torch.from_numpy(transposed.indices.astype(np.int64)),
                    torch.from_numpy(transposed.data), size=transposed.shape, device=batch.device)
        return (self._on_device[batch.device] @ batch.T.contiguous()).T

    def matrix(self) -> np.ndarray:
        """The whole matrix ``S`` as a dense array (for tests and small layers only)."""
        return self._sparse.toarray()


def _check_batch(x, in_features: int) -> None:
    if x.ndim != 2 or x.shape[1] != in_features:
        raise InputError(f"projection expects (batch, {in_features}) input, got {tuple(x.shape)}")


@dataclass(frozen=True)
class LayerReduction:
    """How one layer's activations are reduced before they are cached.

    Attributes
    ----------
    layer : str
        Analysis layer name.
    shape : tuple of int
        Original activation shape of one example (channels first).
    pool : bool
        Whether spatial dimensions are averaged per channel first.
    projection_dim : int or None
        Output dimension of the random projection, or None when the (pooled) features are stored as is.
    seed : int
        The cache seed (the layer's matrix is seeded by it and the layer name).
    kind : {"gaussian", "sparse"}
        The projection (see :data:`PROJECTIONS`), used when ``projection_dim`` is not None.
    """

    layer: str
    shape: tuple[int, ...]
    pool: bool
    projection_dim: int | None
    seed: int
    kind: str = "gaussian"

    @classmethod
    def plan(cls, layer: str, shape: tuple[int, ...], projection_dim: int, pool: bool = False,
             seed: int = 0, kind: str = "gaussian") -> "LayerReduction":
        """Choose the reduction of a layer of the given per-example shape.

        Layers with at most ``projection_dim`` features are stored as is. Larger layers are averaged per
        channel over their spatial dimensions first when ``pool`` is true and they have any, and then
        projected to ``projection_dim`` features by the ``kind`` projection if still larger.
        """
        if int(projection_dim) < 1:
            raise InputError(f"projection_dim must be a positive integer, got {projection_dim}")
        if not isinstance(pool, bool):
            raise InputError(f"pool must be true or false, got {pool!r}")
        if kind not in PROJECTIONS:
            raise InputError(f"projection must be one of {PROJECTIONS}, got {kind!r}")
        shape = tuple(int(size) for size in shape)
        features = int(np.prod(shape))
        pooled = pool and len(shape) >= 2 and features > projection_dim
        reduced = shape[0] if pooled else features
        return cls(layer, shape, pooled, int(projection_dim) if reduced > projection_dim else None, int(seed),
                   kind)

    @property
    def in_features(self) -> int:
        """Features after pooling, before projection."""
        return self.shape[0] if self.pool else int(np.prod(self.shape))

    @property
    def out_features(self) -> int:
        """Features stored in the cache."""
        return self.projection_dim or self.in_features

    @property
    def method(self) -> str:
        steps = [name for name, used in (("pool", self.pool), ("projection", self.projection_dim)) if used]
        return "+".join(steps) or "none"

    def projection(self, cache_bytes: int = DEFAULT_CACHE_BYTES) -> RandomProjection | SparseSignProjection | None:
        """The layer's projection (None when there is none); ``cache_bytes`` applies to the Gaussian's blocks."""
        if self.projection_dim is None:
            return None
        entropy = layer_seed(self.seed, self.layer)
        if self.kind == "sparse":
            return SparseSignProjection(self.in_features, self.projection_dim, entropy)
        return RandomProjection(self.in_features, self.projection_dim, entropy, cache_bytes)

    def describe(self) -> dict:
        """HDF5-friendly attributes recording this reduction."""
        return {
            "reduction": self.method,
            "original_shape": np.asarray(self.shape, dtype=np.int64),
            "pooled_features": self.in_features,
            "features": self.out_features,
            "projection_seed": np.asarray(layer_seed(self.seed, self.layer), dtype=np.int64)
            if self.projection_dim else np.zeros(0, dtype=np.int64),
            "projection": self.kind if self.projection_dim else "",
            "projection_block_rows": BLOCK_ROWS if self.kind == "gaussian" else 0,
            "projection_nonzeros": min(SPARSE_NONZEROS, self.out_features)
            if self.projection_dim and self.kind == "sparse" else 0,
            "projection_scale": _SCALES[self.kind] if self.projection_dim else "",
        }


_SCALES = {"gaussian": "1/sqrt(features)", "sparse": "1/sqrt(projection_nonzeros)"}


class BatchReducer:
    """Applies a :class:`LayerReduction` to batches of activations (torch tensors), one batch at a time.

    Pooling and projection run on the activations' device; the result comes back as a numpy array.
    """

    def __init__(self, reduction: LayerReduction, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.reduction = reduction
        self._projection = reduction.projection(cache_bytes)

    def __call__(self, activations) -> np.ndarray:
        """Reduce a (batch, *shape) tensor to a float32 (batch, features) array."""
        batch = activations.detach().float()
        if tuple(batch.shape[1:]) != self.reduction.shape:
            raise InputError(f"layer {self.reduction.layer!r} gave activations of shape "
                             f"{tuple(batch.shape[1:])}, expected {self.reduction.shape}")
        batch = (batch.flatten(2).mean(2) if self.reduction.pool else batch.flatten(1)).contiguous()
        return batch.cpu().numpy() if self._projection is None else self._projection.project(batch)
