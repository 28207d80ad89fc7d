"""Atomic writes: the previous file survives any failure, and no temporary file is left behind."""
import os
import stat

import pytest

from mftma.atomic import atomic_path, atomic_write, atomic_write_text
from mftma.errors import DataFileError


def test_text_is_written_and_replaced(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["a.json"]


def test_a_failing_writer_keeps_the_previous_file(tmp_path):
    target = tmp_path / "a.csv"
    target.write_text("previous")

    def fail(temporary):
        temporary.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["a.csv"]


def test_a_disk_error_is_a_data_file_error_naming_the_file(tmp_path):
    target = tmp_path / "a.h5"
    target.write_text("previous")

    def full_disk(temporary):
        raise OSError(28, "No space left on device")

    with pytest.raises(DataFileError, match="a.h5.*No space left.*intact"):
        atomic_write(target, full_disk)
    assert target.read_text() == "previous"


def test_temporary_keeps_the_suffix_and_files_follow_the_umask(tmp_path):
    target = tmp_path / "arrays.npz"
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.endswith(".npz")
        temporary.write_bytes(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
