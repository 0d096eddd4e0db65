"""salfmix.runs.files: atomic writes (path first), their errors in one line, and stale temp files."""

import errno
import os
import subprocess

import pytest
import torch

from salfmix.errors import WriteError
from salfmix.runs.files import (
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)


def test_writes_and_replaces(tmp_path):
    path = str(tmp_path / "a.txt")
    atomic_write_text(path, "één\n")
    atomic_write_bytes(str(tmp_path / "b.bin"), b"\x00\x01")
    atomic_write_json(str(tmp_path / "c.json"), {"x": [1, 2]})
    assert open(path, encoding="utf-8").read() == "één\n"
    atomic_write_text(path, "second")
    assert open(path).read() == "second"
    assert open(tmp_path / "c.json").read() == '{\n  "x": [\n    1,\n    2\n  ]\n}\n'
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin", "c.json"]


def test_a_failing_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = str(tmp_path / "keep.txt")
    atomic_write_text(path, "old")

    def half(f):
        f.write(b"partial")
        raise RuntimeError("a bug in the writer")

    with pytest.raises(RuntimeError, match="a bug in the writer"):  # not an OSError: re-raised as it is
        atomic_write(path, half)
    with pytest.raises(ValueError, match="not JSON compliant"):
        atomic_write_json(path, {"x": float("nan")})
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_an_os_error_is_one_line_naming_the_path(tmp_path):
    path = str(tmp_path / "full.bin")
    atomic_write_bytes(path, b"old")

    def full(f):
        f.write(b"abc")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as err:
        atomic_write(path, full)
    assert str(err.value) == f"cannot write {path}: No space left on device"
    assert open(path, "rb").read() == b"old" and os.listdir(tmp_path) == ["full.bin"]


def test_torch_save_wrapping_enospc_is_still_named(tmp_path, monkeypatch):
    # torch.save reports a failed write as "RuntimeError: ... unexpected pos", the OSError in its context
    def save(obj, f):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 704 vs 598") from None

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(WriteError, match=r"model\.pth: No space left on device$"):
        atomic_torch_save(str(tmp_path / "model.pth"), {"w": torch.zeros(3)})
    assert os.listdir(tmp_path) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_tmpfs(small_tmpfs):
    path = str(small_tmpfs / "model.pth")
    atomic_torch_save(path, {"w": torch.ones(1000)})
    with pytest.raises(WriteError, match=rf"^cannot write {path}: No space left on device$"):
        atomic_torch_save(path, {"w": torch.zeros(1 << 20)})  # 4 MiB
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(1000))  # the old file, intact
    assert os.listdir(small_tmpfs) == ["model.pth"]


def test_remove_stale_temps_only_removes_ours(tmp_path):
    ours = [".model_epoch0003.pth.0123456789ab.tmp", ".run.json.abcdefabcdef.tmp"]
    others = ["model_epoch0003.pth", ".hidden.tmp", "notes.0123456789ab.tmp", ".x.0123456789ab.tmp.bak"]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_temps(str(tmp_path)) == sorted(ours)
    assert sorted(os.listdir(tmp_path)) == sorted(others)
    assert remove_stale_temps(str(tmp_path / "missing")) == []


def test_a_missing_folder_is_created(tmp_path):
    atomic_write_text(str(tmp_path / "a" / "b" / "c.txt"), "x")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "x"
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match=r"file/c\.txt: "):
        atomic_write_text(str(tmp_path / "file" / "c.txt"), "x")
