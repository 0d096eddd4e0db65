"""VOC-format folders: the generator's layout, registration, and the one-line errors."""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET

import pytest

import detection  # noqa: F401  (before Detectron2)
from detection.config import get_detection_cfg
from detection.data import prepare_datasets, register_voc_folder, validate_voc_annotations
from detection.voc_demo import DEMO_CLASSES
from salfmix.errors import DetectionSetupError

from detectron2.data import DatasetCatalog, MetadataCatalog

CLASSES = list(DEMO_CLASSES)


@pytest.fixture
def voc_copy(voc_demo_dir: str, tmp_path) -> str:
    """A private copy of the generated set, for tests that damage it."""
    dst = tmp_path / "VOC2007"
    shutil.copytree(voc_demo_dir, dst)
    return str(dst)


def test_generator_writes_the_voc_layout(voc_demo_dir: str) -> None:
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        assert os.path.isdir(os.path.join(voc_demo_dir, sub))
    with open(os.path.join(voc_demo_dir, "ImageSets", "Main", "test.txt")) as f:
        test_ids = f.read().split()
    assert len(test_ids) >= 8
    names = set()
    for image_id in test_ids:
        assert os.path.isfile(os.path.join(voc_demo_dir, "JPEGImages", f"{image_id}.jpg"))
        root = ET.parse(os.path.join(voc_demo_dir, "Annotations", f"{image_id}.xml")).getroot()
        names.update(o.findtext("name") for o in root.findall("object"))
    assert names == set(CLASSES)  # every class has ground truth in the test split


def test_register_voc_folder_loads_detectron2_dicts(voc_demo_dir: str) -> None:
    register_voc_folder("test_voc_reg_trainval", voc_demo_dir, "trainval", 2007, CLASSES)
    dicts = DatasetCatalog.get("test_voc_reg_trainval")
    meta = MetadataCatalog.get("test_voc_reg_trainval")
    assert len(dicts) == 16 and meta.thing_classes == CLASSES and meta.year == 2007
    first = dicts[0]
    root = ET.parse(os.path.join(voc_demo_dir, "Annotations", f"{first['image_id']}.xml")).getroot()
    obj = root.find("object")
    box = [float(obj.findtext(f"bndbox/{c}")) for c in ("xmin", "ymin", "xmax", "ymax")]
    ann = first["annotations"][0]
    assert ann["category_id"] == CLASSES.index(obj.findtext("name"))
    assert ann["bbox"] == [box[0] - 1, box[1] - 1, box[2], box[3]]  # Detectron2's VOC convention
    assert validate_voc_annotations(voc_demo_dir, "test", CLASSES, for_evaluation=True) > 0


def _first_xml(voc: str, split: str = "trainval") -> str:
    with open(os.path.join(voc, "ImageSets", "Main", f"{split}.txt")) as f:
        return os.path.join(voc, "Annotations", f"{f.read().split()[0]}.xml")


def test_broken_xml_is_named(voc_copy: str) -> None:
    xml = _first_xml(voc_copy)
    with open(xml, "w") as f:
        f.write("<annotation><object>")
    with pytest.raises(DetectionSetupError, match=f"{os.path.basename(xml)}: not valid XML"):
        validate_voc_annotations(voc_copy, "trainval", CLASSES)


def test_unknown_class_is_named(voc_copy: str) -> None:
    xml = _first_xml(voc_copy)
    tree = ET.parse(xml)
    tree.getroot().find("object/name").text = "purple"
    tree.write(xml)
    with pytest.raises(
        DetectionSetupError,
        match=rf"{os.path.basename(xml)}: unknown class 'purple' \(expected one of red, green, blue\)",
    ):
        validate_voc_annotations(voc_copy, "trainval", CLASSES)


def test_evaluation_fields_are_required_for_test_sets(voc_copy: str) -> None:
    xml = _first_xml(voc_copy, "test")
    tree = ET.parse(xml)
    obj = tree.getroot().find("object")
    obj.remove(obj.find("difficult"))
    tree.write(xml)
    assert validate_voc_annotations(voc_copy, "test", CLASSES) > 0  # the loader does not read it
    with pytest.raises(DetectionSetupError, match=r"missing <difficult>"):
        validate_voc_annotations(voc_copy, "test", CLASSES, for_evaluation=True)


def test_missing_split_and_folder(voc_copy: str, tmp_path) -> None:
    with pytest.raises(DetectionSetupError, match=r"split file .*val\.txt not found"):
        validate_voc_annotations(voc_copy, "val", CLASSES)
    with pytest.raises(DetectionSetupError, match="VOC folder .* not found"):
        validate_voc_annotations(str(tmp_path / "nowhere"), "test", CLASSES)


def _cfg(**voc_folder):
    cfg = get_detection_cfg()
    for k, v in voc_folder.items():
        setattr(cfg.SALFMIX.VOC_FOLDER, k, v)
    return cfg


def test_prepare_datasets_registers_the_config_folder(voc_demo_dir: str) -> None:
    cfg = _cfg(NAME="test_voc_cfg", DIR=voc_demo_dir, CLASS_NAMES=CLASSES)
    cfg.DATASETS.TRAIN = ("test_voc_cfg_trainval",)
    cfg.DATASETS.TEST = ("test_voc_cfg_test",)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    counts = prepare_datasets(cfg)
    assert set(counts) == {"test_voc_cfg_trainval", "test_voc_cfg_test"} and min(counts.values()) > 0
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 20
    with pytest.raises(DetectionSetupError, match="NUM_CLASSES is 20 but test_voc_cfg_trainval has 3 classes"):
        prepare_datasets(cfg)
    cfg.DATASETS.TEST = ("no_such_set",)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    with pytest.raises(DetectionSetupError, match="'no_such_set' is not a registered dataset"):
        prepare_datasets(cfg)


def test_builtin_voc_without_datasets_folder_names_the_variable(tmp_path, monkeypatch) -> None:
    # voc_2007_test was registered at import under $DETECTRON2_DATASETS (default ./datasets)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    cfg = get_detection_cfg()
    cfg.DATASETS.TRAIN = ("voc_2007_trainval",)
    cfg.DATASETS.TEST = ("voc_2007_test",)
    if os.path.isdir(MetadataCatalog.get("voc_2007_trainval").dirname):
        pytest.skip("a VOC2007 folder exists here")
    with pytest.raises(
        DetectionSetupError, match=r"voc_2007_trainval: VOC folder .*VOC2007 not found \(DETECTRON2_DATASETS"
    ):
        prepare_datasets(cfg)
