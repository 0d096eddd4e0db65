"""TinyImageNet-200 in its distributed on-disk layout.

::

    ROOT/wnids.txt                          one wnid per line: the class list, in label order
    ROOT/words.txt                          wnid<TAB>names (optional)
    ROOT/train/<wnid>/images/*.JPEG         training images of class <wnid>
    ROOT/train/<wnid>/<wnid>_boxes.txt      boxes (ignored: classification only)
    ROOT/val/images/*.JPEG                  validation images
    ROOT/val/val_annotations.txt            filename<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1

``ROOT`` may also be the folder that contains ``tiny-imagenet-200``. Only the file lists and
labels are read here; decoding happens once, when the split is packed (:mod:`pretrain.data.cache`).
"""

from __future__ import annotations

import os

import numpy as np

SPLITS = ("train", "val")
FOLDER = "tiny-imagenet-200"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def resolve_root(root: str) -> str:
    """The folder holding ``wnids.txt``: ``root`` itself or ``root/tiny-imagenet-200``."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"TinyImageNet root {root!r} is not a folder")
    for candidate in (root, os.path.join(root, FOLDER)):
        if os.path.isfile(os.path.join(candidate, "wnids.txt")):
            return candidate
    raise FileNotFoundError(
        f"{os.path.join(root, 'wnids.txt')} not found (nor under {FOLDER}/): not a TinyImageNet root"
    )


def read_wnids(root: str) -> list[str]:
    """The class wnids of ``root/wnids.txt`` in file order (label ``k`` = line ``k``)."""
    path = os.path.join(resolve_root(root), "wnids.txt")
    with open(path, encoding="utf-8") as f:
        wnids = [line.strip() for line in f if line.strip()]
    if not wnids:
        raise ValueError(f"{path}: no wnids (expected one class id per line)")
    seen = set()
    for lineno, wnid in enumerate(wnids, 1):
        if wnid in seen or any(c.isspace() for c in wnid):
            raise ValueError(f"{path}:{lineno}: {wnid!r} is a duplicate or contains whitespace (expected unique ids)")
        seen.add(wnid)
    return wnids


def read_words(root: str) -> dict[str, str]:
    """``wnid -> human-readable names`` from ``root/words.txt``; empty if the file is absent."""
    path = os.path.join(resolve_root(root), "words.txt")
    if not os.path.isfile(path):
        return {}
    words = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            wnid, sep, names = line.rstrip("\n").partition("\t")
            if not sep:
                raise ValueError(f"{path}:{lineno}: expected 'wnid<TAB>names', got {line.rstrip()!r}")
            words[wnid] = names
    return words


def _images_in(folder: str) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def _list_train(root: str, wnids: list[str]) -> tuple[list[str], np.ndarray]:
    train = os.path.join(root, "train")
    on_disk = sorted(e.name for e in os.scandir(train) if e.is_dir() and not e.name.startswith("."))
    unknown = sorted(set(on_disk) - set(wnids))
    if unknown:
        raise ValueError(f"{train}: class folder {unknown[0]!r} is not in {os.path.join(root, 'wnids.txt')}")
    paths: list[str] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = os.path.join(train, wnid, "images")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder} not found (class {wnid} of wnids.txt has no training folder)")
        names = _images_in(folder)
        if not names:
            raise ValueError(f"{folder}: no images (expected *.JPEG files of class {wnid})")
        paths.extend(os.path.join(folder, n) for n in names)
        labels.extend([label] * len(names))
    return paths, np.asarray(labels, dtype=np.int64)


def _list_val(root: str, wnids: list[str]) -> tuple[list[str], np.ndarray]:
    images = os.path.join(root, "val", "images")
    ann = os.path.join(root, "val", "val_annotations.txt")
    if not os.path.isdir(images):
        raise FileNotFoundError(f"{images} not found (the val split's image folder)")
    if not os.path.isfile(ann):
        raise FileNotFoundError(f"{ann} not found (the val split's labels)")
    index = {w: k for k, w in enumerate(wnids)}
    paths: list[str] = []
    labels: list[int] = []
    seen = set()
    with open(ann, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 6 or not all(v.strip().lstrip("-").isdigit() for v in fields[2:]):
                expected = "file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1"
                raise ValueError(f"{ann}:{lineno}: expected '{expected}', got {line.rstrip()!r}")
            name, wnid = fields[0], fields[1]
            if wnid not in index:
                raise ValueError(f"{ann}:{lineno}: wnid {wnid!r} is not in {os.path.join(root, 'wnids.txt')}")
            if name in seen:
                raise ValueError(f"{ann}:{lineno}: {name!r} is annotated twice")
            path = os.path.join(images, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{ann}:{lineno}: image {path} not found")
            seen.add(name)
            paths.append(path)
            labels.append(index[wnid])
    unlabelled = sorted(set(_images_in(images)) - seen)
    if unlabelled:
        raise ValueError(
            f"{os.path.join(images, unlabelled[0])} has no line in {ann} ({len(unlabelled)} unlabelled images)"
        )
    if not paths:
        raise ValueError(f"{ann}: no annotations (expected one line per image of {images})")
    return paths, np.asarray(labels, dtype=np.int64)


def list_tinyimagenet(root: str, split: str) -> tuple[list[str], np.ndarray, list[str]]:
    """Image paths, int64 labels and the class wnids of one split (``"train"`` or ``"val"``).

    Train images are ordered by class (wnids.txt order), then by file name; val images follow
    ``val_annotations.txt``. Every image of the split folder must be labelled.
    """
    if split not in SPLITS:
        raise ValueError(f"TinyImageNet split {split!r}: expected one of {SPLITS}")
    root = resolve_root(root)
    wnids = read_wnids(root)
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} not found (the {split} split of TinyImageNet)")
    paths, labels = _list_train(root, wnids) if split == "train" else _list_val(root, wnids)
    return paths, labels, wnids


def label_files(root: str, split: str) -> list[str]:
    """The text files the labels of ``split`` come from (they are part of the cache fingerprint)."""
    root = resolve_root(root)
    files = [os.path.join(root, "wnids.txt")]
    if split == "val":
        files.append(os.path.join(root, "val", "val_annotations.txt"))
    return files
