"""The compact in-repository copy of the reference MFTMA outputs (tests/data/golden/), and the script that makes it.

The source is the original MFTMA code's outputs in ``../shared/golden`` (``mftma_reference.npz`` and
``mftma_reference.json``, see its README). The copy keeps only what the tests read:

* ``golden.npz`` (compressed, float64 exactly as in the source): the single-manifold inputs ``single{i}_sD1``,
  the full-pipeline inputs ``full{j}_X`` and the reference's per-manifold outputs ``full{j}_capacity``,
  ``_radius`` and ``_dimension``;
* ``golden.json``: the per-case fields the tests compare with, and where each t-vector array lies in the
  stream ``numpy.random.default_rng(seed).standard_normal(...)`` the reference drew them from. The t vectors
  (more than half of the source's bytes) are regenerated bit for bit from that stream on loading, and a
  SHA-256 digest of the stream proves it is the same one.

Regenerate the copy with ``python tests/golden_compact.py [SOURCE_DIR]`` (default ``../shared/golden``
beside the checkout).
"""
import hashlib
import json
import pathlib
import sys

import numpy as np

COMPACT_DIR = pathlib.Path(__file__).resolve().parent / "data" / "golden"
SOURCE_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "golden"

#: The fields of the source's JSON cases that the tests read.
SINGLE_FIELDS = ("key", "kind", "kappa", "n_t", "capacity", "radius_M", "dimension_M")
FULL_FIELDS = (
    "key", "kappa", "n_t", "capacity_avg", "dimension_avg", "center_correlation", "K",
    "participation_ratio", "dim_explained_variance_90", "feature_dim",
)  # fmt: skip
FULL_OUTPUTS = ("capacity", "radius", "dimension")


def load_source(folder=SOURCE_DIR):
    """The source reference outputs as ``(arrays, meta)``: a dict of every array and the parsed JSON."""
    folder = pathlib.Path(folder)
    with np.load(folder / "mftma_reference.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    return arrays, json.loads((folder / "mftma_reference.json").read_text())


def load_compact(folder=COMPACT_DIR):
    """The compact copy as ``(arrays, meta)``, with the same keys and fields as the source for what it keeps."""
    folder = pathlib.Path(folder)
    with np.load(folder / "golden.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads((folder / "golden.json").read_text())
    arrays.update(_t_vecs(meta.pop("t_vecs")))
    return arrays, meta


def _stream(seed, length):
    return np.random.default_rng(seed).standard_normal(length)


def _digest(values):
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f8").tobytes()).hexdigest()


def _t_vecs(spec):
    """The t-vector arrays regenerated from their offsets in the reference's random stream."""
    stream = _stream(spec["seed"], spec["length"])
    if _digest(stream) != spec["sha256"]:
        raise RuntimeError(
            f"numpy {np.__version__} draws a different default_rng({spec['seed']}).standard_normal stream than "
            "the one the golden t vectors were drawn from; the compact golden copy cannot rebuild them"
        )
    return {key: stream[start : start + rows * cols].reshape(rows, cols) for key, (start, rows, cols) in spec["blocks"].items()}


def _t_vec_keys(meta):
    singles = [f"{case['key']}_t_vec" for case in meta["single"]]
    return singles + [f"{case['key']}_t{p}" for case in meta["full"] for p in range(case["P"])]


def _locate_t_vecs(arrays, keys, seed):
    """Offsets of each t-vector array in the seeded stream (each is one contiguous, C-ordered block)."""
    blocks, start = {}, 0
    length = sum(arrays[key].size for key in keys)
    stream = _stream(seed, 4 * length)
    for key in keys:
        values = arrays[key].ravel()
        hits = np.flatnonzero(stream[start:] == values[0]) + start
        found = [i for i in hits if np.array_equal(stream[i : i + values.size], values)]
        if not found:
            raise RuntimeError(f"{key} is not a block of default_rng({seed}).standard_normal")
        start = int(found[0])
        blocks[key] = [start, *arrays[key].shape]
        start += values.size
    return {"seed": seed, "length": start, "sha256": _digest(stream[:start]), "blocks": blocks}


def write_compact(source=SOURCE_DIR, target=COMPACT_DIR):
    """Write ``golden.npz`` and ``golden.json`` in ``target`` from the reference outputs in ``source``."""
    arrays, meta = load_source(source)
    kept = {f"{case['key']}_sD1": arrays[f"{case['key']}_sD1"] for case in meta["single"]}
    for case in meta["full"]:
        for name in ("X", *FULL_OUTPUTS):
            kept[f"{case['key']}_{name}"] = arrays[f"{case['key']}_{name}"]
    compact_meta = {
        "t_vecs": _locate_t_vecs(arrays, _t_vec_keys(meta), meta["seed"]),
        "single": [{field: case[field] for field in SINGLE_FIELDS} for case in meta["single"]],
        "full": [{field: case[field] for field in FULL_FIELDS} for case in meta["full"]],
    }
    target = pathlib.Path(target)
    target.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target / "golden.npz", **kept)
    (target / "golden.json").write_text(json.dumps(compact_meta, indent=1) + "\n")


if __name__ == "__main__":
    write_compact(*sys.argv[1:2])
    print(f"wrote {COMPACT_DIR}")
