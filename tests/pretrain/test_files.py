"""pretrain.files: the one atomic-write helper of the pretraining side."""
import os

import pytest

from pretrain.files import atomic_write, atomic_write_bytes, atomic_write_text


def test_writes_and_replaces(tmp_path):
    path = str(tmp_path / "a.txt")
    atomic_write_text(path, "één\n")
    atomic_write_bytes(str(tmp_path / "b.bin"), b"\x00\x01")
    assert open(path, encoding="utf-8").read() == "één\n"
    atomic_write_text(path, "second")
    assert open(path).read() == "second"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin"]


def test_a_failing_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = str(tmp_path / "keep.txt")
    atomic_write_text(path, "old")

    def half(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half)
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]
