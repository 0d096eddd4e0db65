"""Every VOC image checked before training (decoded once, size against the XML, the verdict remembered)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from PIL import Image

import detection  # noqa: F401  (before Detectron2)
from detection import image_check
from detection.config import get_detection_cfg
from detection.data import prepare_datasets, read_split, validate_voc_split
from detection.voc_demo import DEMO_CLASSES
from salfmix.errors import DetectionSetupError

CLASSES = list(DEMO_CLASSES)


@pytest.fixture
def voc(voc_demo_dir: str, tmp_path) -> str:
    dst = tmp_path / "VOC2007"
    shutil.copytree(voc_demo_dir, dst, ignore=shutil.ignore_patterns(".salfmix_cache"))
    return str(dst)


def _image(voc: str, split: str = "trainval", k: int = 0) -> str:
    return os.path.join(voc, "JPEGImages", f"{read_split(voc, split)[k]}.jpg")


def _cfg(voc: str, name: str):
    cfg = get_detection_cfg()
    cfg.SALFMIX.VOC_FOLDER.NAME, cfg.SALFMIX.VOC_FOLDER.DIR = name, voc
    cfg.SALFMIX.VOC_FOLDER.CLASS_NAMES = CLASSES
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (f"{name}_trainval",), (f"{name}_test",)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    return cfg


def test_a_truncated_jpeg_stops_before_training_in_one_line(voc: str) -> None:
    bad = _image(voc, "trainval", 3)
    data = open(bad, "rb").read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DetectionSetupError) as err:
        prepare_datasets(_cfg(voc, "img_check_truncated"))
    message = str(err.value)
    assert message.startswith(f"{bad}: not a readable image (") and "\n" not in message


def test_garbage_and_missing_images_are_named(voc: str) -> None:
    bad = _image(voc, "test", 1)
    with open(bad, "wb") as f:
        f.write(b"not a jpeg at all" * 10)
    with pytest.raises(DetectionSetupError, match=rf"^{bad}: not a readable image"):
        validate_voc_split(voc, "test", CLASSES, for_evaluation=True)
    os.remove(bad)
    with pytest.raises(DetectionSetupError, match=rf"^{bad}: image not found \(listed in test.txt\)"):
        validate_voc_split(voc, "test", CLASSES, for_evaluation=True)


def test_a_size_that_contradicts_the_xml_is_named(voc: str) -> None:
    bad = _image(voc)
    Image.new("RGB", (64, 40), (90, 90, 90)).save(bad, format="JPEG")
    with pytest.raises(DetectionSetupError, match=r"the image is 64x40 but .*\.xml says <size> 128x96"):
        validate_voc_split(voc, "trainval", CLASSES)


def test_verdicts_are_remembered_by_size_and_mtime(voc: str, monkeypatch) -> None:
    decoded = []
    check_one = image_check._check_one
    monkeypatch.setattr(image_check, "_check_one", lambda path, *a: decoded.append(path) or check_one(path, *a))
    validate_voc_split(voc, "trainval", CLASSES)
    assert len(decoded) == len(read_split(voc, "trainval"))
    cache = os.path.join(voc, ".salfmix_cache", image_check.CACHE_FILE)
    assert len(json.load(open(cache))["images"]) == len(decoded)
    decoded.clear()
    validate_voc_split(voc, "trainval", CLASSES)  # nothing changed: nothing decoded
    assert decoded == []
    touched = _image(voc, "trainval", 2)
    stat = os.stat(touched)
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    validate_voc_split(voc, "trainval", CLASSES)
    assert decoded == [touched]


def test_a_read_only_folder_keeps_its_verdicts_in_the_user_cache(voc: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(os, "access", lambda path, mode: not path.endswith(".salfmix_cache"))
    path = image_check.image_cache_path(voc)
    assert path.startswith(str(tmp_path / "home" / ".cache" / "salfmix"))
    validate_voc_split(voc, "test", CLASSES)
    assert os.path.isfile(path)


def test_workers_that_do_not_validate_decode_nothing(voc: str, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("a worker decoded the images")

    monkeypatch.setattr("detection.data.check_voc_images", fail)
    counts = prepare_datasets(_cfg(voc, "img_check_worker"), validate=False)
    assert counts == {}
