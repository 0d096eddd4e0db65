"""A tiny generated dataset in the real PASCAL VOC layout, for demos and tests.

Coloured rectangles (one colour per class) on noisy backgrounds, written as
``ROOT/VOC2007/{Annotations,ImageSets/Main,JPEGImages}`` with VOC-style XML (1-based inclusive
integer boxes, ``pose``/``truncated``/``difficult`` present). Not a real dataset: it only
shows that the pipeline runs and learns. Usage::

    python -m detection.voc_demo --out output/demo/voc_demo      # -> output/demo/voc_demo/VOC2007
"""
from __future__ import annotations

import argparse
import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = ["DEMO_CLASSES", "make_voc_demo", "write_voc_xml"]

DEMO_CLASSES = ("red", "green", "blue")
_COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 70, 230),
}
Box = Tuple[str, int, int, int, int]  # class, xmin, ymin, xmax, ymax (1-based, inclusive)


def write_voc_xml(
    path: str, filename: str, width: int, height: int, boxes: Sequence[Box], difficult: Sequence[int] = ()
) -> None:
    """Write one VOC annotation file with the fields Detectron2's loader and evaluator read."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for i, (name, x0, y0, x1, y1) in enumerate(boxes):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(difficult[i] if i < len(difficult) else 0)
        bb = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1)):
            ET.SubElement(bb, tag).text = str(value)
    ET.ElementTree(root).write(path)


def _draw(
    rng: np.random.Generator, width: int, height: int, class_names: Sequence[str], max_objects: int
) -> Tuple[np.ndarray, List[Box]]:
    base = rng.integers(90, 170, size=3)
    img = np.clip(base + rng.normal(0, 12, size=(height, width, 3)), 0, 255)
    boxes: List[Box] = []
    taken = np.zeros((height, width), bool)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):  # objects do not overlap, so every box is fully visible
            w = int(rng.integers(width // 6, width // 2))
            h = int(rng.integers(height // 6, height // 2))
            x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if not taken[y0:y0 + h, x0:x0 + w].any():
                break
        else:
            continue
        name = class_names[int(rng.integers(len(class_names)))]
        colour = np.array(_COLOURS.get(name, tuple(int(c) for c in rng.integers(0, 256, 3))))
        img[y0:y0 + h, x0:x0 + w] = np.clip(colour + rng.normal(0, 8, size=(h, w, 3)), 0, 255)
        taken[y0:y0 + h, x0:x0 + w] = True
        boxes.append((name, x0 + 1, y0 + 1, x0 + w, y0 + h))  # VOC: 1-based, inclusive
    return img.astype(np.uint8), boxes


def make_voc_demo(
    root: str,
    num_trainval: int = 32,
    num_test: int = 12,
    size: Tuple[int, int] = (128, 96),
    seed: int = 0,
    class_names: Sequence[str] = DEMO_CLASSES,
    max_objects: int = 3,
) -> str:
    """Generate the dataset under ``root``; return the ``VOC2007`` folder to register.

    ``size`` is (width, height). Splits ``trainval`` and ``test`` are written, and every class
    appears in the test split (a class without ground truth has no AP).
    """
    width, height = size
    voc = os.path.join(root, "VOC2007")
    for sub in ("Annotations", os.path.join("ImageSets", "Main"), "JPEGImages"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    splits: Dict[str, List[str]] = {"trainval": [], "test": []}
    index = 0

    def add(split: str) -> set:
        nonlocal index
        img, boxes = _draw(rng, width, height, class_names, max_objects)
        image_id = f"{index:06d}"
        index += 1
        Image.fromarray(img).save(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), quality=95)
        write_voc_xml(os.path.join(voc, "Annotations", f"{image_id}.xml"), f"{image_id}.jpg", width, height, boxes)
        splits[split].append(image_id)
        return {b[0] for b in boxes}

    for _ in range(num_trainval):
        add("trainval")
    seen: set = set()
    for _ in range(num_test):
        seen |= add("test")
    for _ in range(100):  # a few more test images until every class has ground truth
        if seen >= set(class_names):
            break
        seen |= add("test")
    for split, ids in splits.items():
        with open(os.path.join(voc, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    return voc


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="output/demo/voc_demo", help="root folder; the dataset goes to OUT/VOC2007")
    p.add_argument("--num-trainval", type=int, default=32)
    p.add_argument("--num-test", type=int, default=12)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(args: Optional[argparse.Namespace] = None) -> str:
    """Generate the dataset and print where it is."""
    args = args or get_parser().parse_args()
    voc = make_voc_demo(args.out, args.num_trainval, args.num_test, (args.width, args.height), args.seed)
    print(f"wrote a generated VOC-format dataset (classes {', '.join(DEMO_CLASSES)}) to {voc}")
    return voc


if __name__ == "__main__":
    main()
