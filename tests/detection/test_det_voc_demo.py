"""python -m detection.voc_demo writes only into its own folder, and rewrites nothing unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from detection.voc_demo import MARKER, make_voc_demo
from salfmix.errors import DetectionSetupError

REPO = Path(__file__).resolve().parents[2]


def _real_voc(root: Path) -> Path:
    """A stand-in for a real VOC2007 folder: an image, an annotation and a split file of its own."""
    voc = root / "VOC2007"
    for sub, name, text in (
        ("JPEGImages", "000000.jpg", "real image"),
        ("Annotations", "000000.xml", "<real/>"),
        ("ImageSets/Main", "trainval.txt", "000000\n"),
    ):
        (voc / sub).mkdir(parents=True)
        (voc / sub / name).write_text(text)
    return voc


def _contents(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_command_refuses_a_real_voc_folder_and_touches_nothing(tmp_path: Path) -> None:
    voc = _real_voc(tmp_path)
    before = _contents(voc)
    proc = subprocess.run(
        [sys.executable, "-m", "detection.voc_demo", "--out", str(tmp_path)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: {voc} exists and has no {MARKER}: not made by detection.voc_demo "
        "(a real dataset?), refusing to write into it; choose another --out"
    )
    assert _contents(voc) == before


def test_its_own_folder_is_rewritten_only_where_bytes_change(tmp_path: Path) -> None:
    voc = Path(make_voc_demo(str(tmp_path), num_trainval=4, num_test=3, seed=1))
    assert (voc / MARKER).is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in voc.rglob("*") if p.is_file()}
    assert make_voc_demo(str(tmp_path), num_trainval=4, num_test=3, seed=1) == str(voc)
    assert {p: p.stat().st_mtime_ns for p in voc.rglob("*") if p.is_file()} == mtimes
    make_voc_demo(str(tmp_path), num_trainval=4, num_test=3, seed=2)  # other content: rewritten
    assert any(p.stat().st_mtime_ns != t for p, t in mtimes.items() if p.suffix == ".jpg")
    assert not [p for p in os.listdir(voc / "JPEGImages") if p.endswith(".tmp")]


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "VOC2007").write_text("not a folder")
    with pytest.raises(DetectionSetupError, match="VOC2007: exists and is not a folder"):
        make_voc_demo(str(tmp_path))


def test_a_folder_of_this_generator_from_before_the_marker_is_recognised(tmp_path: Path) -> None:
    voc = Path(make_voc_demo(str(tmp_path), num_trainval=3, num_test=3, seed=4))
    (voc / MARKER).unlink()  # as the generator wrote it before it had a marker
    make_voc_demo(str(tmp_path), num_trainval=3, num_test=3, seed=4)
    assert (voc / MARKER).is_file()
    (voc / MARKER).unlink()
    (voc / "JPEGImages" / "mine.jpg").write_bytes(b"a file the generator never wrote")
    with pytest.raises(DetectionSetupError, match="has no GENERATED.txt: not made by detection.voc_demo"):
        make_voc_demo(str(tmp_path), num_trainval=3, num_test=3, seed=4)
