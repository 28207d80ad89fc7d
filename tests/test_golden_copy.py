"""The compact golden copy in tests/data/golden against its source, the reference outputs in ../shared/golden."""
import os
import pathlib

import numpy as np
import pytest
from golden_compact import COMPACT_DIR, FULL_FIELDS, SINGLE_FIELDS, SOURCE_DIR, load_compact, load_source

#: Where the source is: $MFTMA_GOLDEN_DIR, else ../shared/golden beside the checkout.
SOURCE = pathlib.Path(os.environ.get("MFTMA_GOLDEN_DIR", SOURCE_DIR))


@pytest.fixture(scope="module")
def source():
    if not (SOURCE / "mftma_reference.npz").exists():
        pytest.skip(f"golden source not found at {SOURCE} (set MFTMA_GOLDEN_DIR); only the copy is checked")
    return load_source(SOURCE)


def test_copy_holds_every_source_array_bit_for_bit(golden, source):
    arrays, _ = golden
    source_arrays, _ = source
    assert sorted(arrays) == sorted(source_arrays)
    for key, values in source_arrays.items():
        assert arrays[key].dtype == values.dtype == np.float64, key
        np.testing.assert_array_equal(arrays[key], values, err_msg=key, strict=True)


def test_copy_holds_the_source_fields_the_tests_read(golden, source):
    _, meta = golden
    _, source_meta = source
    for kind, fields in (("single", SINGLE_FIELDS), ("full", FULL_FIELDS)):
        assert meta[kind] == [{field: case[field] for field in fields} for case in source_meta[kind]]


def test_copy_is_compact_and_complete(golden):
    arrays, meta = golden
    size = sum(path.stat().st_size for path in COMPACT_DIR.iterdir())
    assert size < 4_000_000
    assert (len(meta["single"]), len(meta["full"])) == (24, 6)
    assert all(values.dtype == np.float64 and np.isfinite(values).all() for values in arrays.values())


def test_t_vecs_are_refused_when_the_stream_differs(tmp_path):
    for name in ("golden.npz", "golden.json"):
        (tmp_path / name).write_bytes((COMPACT_DIR / name).read_bytes())
    text = (tmp_path / "golden.json").read_text()
    (tmp_path / "golden.json").write_text(text.replace('"seed": 11', '"seed": 12', 1))
    with pytest.raises(RuntimeError, match="different default_rng"):
        load_compact(tmp_path)
