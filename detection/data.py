"""PASCAL VOC datasets for Detectron2: the built-in VOC07/VOC12 names and any VOC-format folder.

Detectron2 registers ``voc_2007_trainval``, ``voc_2012_trainval``, ``voc_2007_test`` (and the
other splits) itself, under ``$DETECTRON2_DATASETS/VOC2007|VOC2012`` (default ``./datasets``),
when ``detectron2.data`` is first imported: set the variable before that. Its loader
(``load_voc_instances``) is kept; this module adds what it lacks, one-line errors naming the
folder, split file, annotation XML or image at fault, checked before any training starts (the
images by :mod:`detection.image_check`: decoded once, the verdict remembered).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence

import detection  # noqa: F401  (restores the names Detectron2 0.6 needs before it is imported)
from detection.image_check import check_voc_images
from salfmix.errors import DetectionSetupError

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import load_voc_instances

__all__ = [
    "check_voc_folder",
    "prepare_datasets",
    "read_split",
    "register_voc_folder",
    "validate_voc_annotations",
    "validate_voc_split",
]

# Fields Detectron2's VOC evaluator (parse_rec) reads from every object of a test set.
_EVAL_FIELDS = ("pose", "truncated", "difficult")


def _where(name: str) -> str:
    # Only Detectron2's built-in VOC names are resolved through DETECTRON2_DATASETS.
    if not name.startswith(("voc_2007_", "voc_2012_")):
        return ""
    root = os.environ.get("DETECTRON2_DATASETS")
    where = f"DETECTRON2_DATASETS={root}" if root else "DETECTRON2_DATASETS is not set, so ./datasets is used"
    return f" ({where}; it must hold VOC2007/ and VOC2012/)"


def check_voc_folder(dirname: str, split: str, name: str = "") -> None:
    """Check the VOC layout of ``dirname`` (Annotations/, JPEGImages/, ImageSets/Main/SPLIT.txt)."""
    label = f"{name}: " if name else ""
    if not os.path.isdir(dirname):
        raise DetectionSetupError(f"{label}VOC folder {dirname} not found{_where(name)}")
    for sub in ("Annotations", "JPEGImages"):
        if not os.path.isdir(os.path.join(dirname, sub)):
            folder = os.path.join(dirname, sub)
            raise DetectionSetupError(f"{label}{folder}: folder not found (expected the VOC layout)")
    split_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(split_file):
        raise DetectionSetupError(f"{label}split file {split_file} not found")


def read_split(dirname: str, split: str) -> list[str]:
    """The image ids listed in ``ImageSets/Main/SPLIT.txt``."""
    split_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    with open(split_file, encoding="utf-8") as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if len(ids) < 2:
        # Detectron2 reads the file with np.loadtxt, which turns one line into a 0-d array.
        raise DetectionSetupError(f"{split_file}: lists {len(ids)} images; Detectron2's VOC loader needs at least 2")
    return ids


def _text(node: ET.Element, path: str, xml_file: str) -> str:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise DetectionSetupError(f"{xml_file}: missing <{path}>")
    return found.text.strip()


def _number(node: ET.Element, path: str, xml_file: str, integer: bool) -> float:
    text = _text(node, path, xml_file)
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise DetectionSetupError(f"{xml_file}: <{path}> is {text!r}, expected {kind}") from None


def validate_voc_annotations(dirname: str, split: str, class_names: Sequence[str], for_evaluation: bool = False) -> int:
    """Parse every annotation of a split; return the number of objects.

    Checks what Detectron2's loader reads (size, object names among ``class_names``, numeric
    boxes) and, with ``for_evaluation``, what its VOC evaluator also reads (``pose``,
    ``truncated``, ``difficult``, integer boxes). The first problem is a one-line error naming
    the XML file.
    """
    return _parse_annotations(dirname, split, class_names, for_evaluation)[0]


def validate_voc_split(
    dirname: str, split: str, class_names: Sequence[str], for_evaluation: bool = False, images: bool = True
) -> int:
    """:func:`validate_voc_annotations`, then (``images``) every image of the split decoded and
    its size compared with the annotation (:func:`detection.image_check.check_voc_images`,
    remembered across runs). Returns the number of objects."""
    n_objects, sizes = _parse_annotations(dirname, split, class_names, for_evaluation)
    if images:
        check_voc_images(dirname, split, sizes)
    return n_objects


def _parse_annotations(
    dirname: str, split: str, class_names: Sequence[str], for_evaluation: bool
) -> tuple[int, dict[str, tuple[int, int]]]:
    """The object count and ``{image_id: (width, height)}`` of a split, checked as documented above."""
    check_voc_folder(dirname, split)
    known = set(class_names)
    n_objects = 0
    sizes: dict[str, tuple[int, int]] = {}
    for image_id in read_split(dirname, split):
        xml_file = os.path.join(dirname, "Annotations", f"{image_id}.xml")
        if not os.path.isfile(xml_file):
            raise DetectionSetupError(f"{xml_file}: annotation file not found (listed in {split}.txt)")
        try:
            root = ET.parse(xml_file).getroot()
        except ET.ParseError as err:
            raise DetectionSetupError(f"{xml_file}: not valid XML ({err})") from None
        width = int(_number(root, "size/width", xml_file, integer=True))
        height = int(_number(root, "size/height", xml_file, integer=True))
        sizes[image_id] = (width, height)
        for obj in root.findall("object"):
            name = _text(obj, "name", xml_file)
            if name not in known:
                raise DetectionSetupError(
                    f"{xml_file}: unknown class {name!r} (expected one of {', '.join(class_names)})"
                )
            for coord in ("xmin", "ymin", "xmax", "ymax"):
                _number(obj, f"bndbox/{coord}", xml_file, integer=for_evaluation)
            if for_evaluation:
                for field in _EVAL_FIELDS:
                    _text(obj, field, xml_file)
            n_objects += 1
    return n_objects, sizes


def register_voc_folder(name: str, dirname: str, split: str, year: int, class_names: Sequence[str]) -> None:
    """Register a VOC-format folder as dataset ``name`` with its own class names.

    ``dirname`` holds ``Annotations/``, ``ImageSets/Main/<split>.txt`` and ``JPEGImages/``
    (like ``VOC2007/``). ``year`` 2007 selects the VOC07 11-point AP, 2012 the area under
    the curve. Set ``ROI_HEADS.NUM_CLASSES`` to ``len(class_names)``: the evaluator averages
    over every registered class. Nothing is read until the dataset is used.
    """
    if year not in (2007, 2012):
        raise DetectionSetupError(f"{name}: year {year}, expected 2007 or 2012 (Detectron2's VOC evaluator)")
    if not class_names:
        raise DetectionSetupError(f"{name}: no class names given")
    class_names = list(class_names)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_voc_instances(dirname, split, class_names))
    MetadataCatalog.get(name).set(
        thing_classes=class_names, dirname=dirname, year=year, split=split, evaluator_type="pascal_voc"
    )


def _register_from_cfg(cfg: CfgNode) -> list[str]:
    folder = cfg.SALFMIX.VOC_FOLDER
    if not folder.NAME:
        return []
    if not folder.DIR:
        raise DetectionSetupError("SALFMIX.VOC_FOLDER.DIR: empty; set it to the folder holding Annotations/")
    names = []
    for split in folder.SPLITS:
        name = f"{folder.NAME}_{split}"
        register_voc_folder(name, folder.DIR, split, folder.YEAR, folder.CLASS_NAMES)
        names.append(name)
    return names


def prepare_datasets(cfg: CfgNode, validate: bool = True) -> dict[str, int]:
    """Register ``SALFMIX.VOC_FOLDER`` and check every dataset named in ``DATASETS.TRAIN/TEST``.

    For VOC datasets (built-in or registered here): the folder and split file must exist, the
    class count must match ``ROI_HEADS.NUM_CLASSES``, and (``validate``) every annotation must
    parse and every image decode at its annotated size (:func:`validate_voc_split`; call it in
    one process only: spawned workers pass ``validate=False``). Returns the number of objects
    per VOC dataset. Datasets of other kinds are only
    required to be registered.
    """
    _register_from_cfg(cfg)
    registered = set(DatasetCatalog.list())
    counts: dict[str, int] = {}
    test_names = set(cfg.DATASETS.TEST)
    for name in _unique(list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)):
        if name not in registered:
            raise DetectionSetupError(
                f"DATASETS: {name!r} is not a registered dataset (set SALFMIX.VOC_FOLDER to register a VOC folder)"
            )
        meta = MetadataCatalog.get(name)
        if meta.get("evaluator_type") != "pascal_voc":
            continue
        check_voc_folder(meta.dirname, meta.split, name)
        classes = meta.thing_classes
        if len(classes) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            raise DetectionSetupError(
                f"MODEL.ROI_HEADS.NUM_CLASSES is {cfg.MODEL.ROI_HEADS.NUM_CLASSES} "
                f"but {name} has {len(classes)} classes"
            )
        if validate:
            counts[name] = validate_voc_split(meta.dirname, meta.split, classes, name in test_names)
    return counts


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
