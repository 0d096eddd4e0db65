"""Every image of a VOC split checked once, before training, instead of when it is first sampled.

Detectron2 decodes an image only when the loader draws it, so a corrupt or truncated JPEG (or
one whose size contradicts its annotation's ``<size>``, which Detectron2 refuses as "Mismatched
image shape") stopped a run hours in, with a long PIL traceback. :func:`check_voc_images` opens
every image of a split: the header gives the format and size (compared with the XML, EXIF
rotation applied as Detectron2 does), then a decode at 1/8 scale (JPEG draft mode: the whole
compressed stream is read, so a truncated or garbled file fails as it would in training, at a
fraction of a full decode's cost), in threads. The first bad image is a one-line
:class:`~salfmix.errors.DetectionSetupError` naming the file.

Good verdicts are remembered in a small JSON file keyed by the image's name, byte size, mtime
and the annotated size, so a re-run checks only new or changed images: ``<VOC dir>/.salfmix_cache/
voc_images.json`` when that folder is writable, else ``~/.cache/salfmix/<hash of the folder>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from salfmix.errors import DetectionSetupError, RunError
from salfmix.runs.files import atomic_write_json

__all__ = ["CACHE_FILE", "check_voc_images", "image_cache_path"]

CACHE_FILE = "voc_images.json"
_VERSION = 1
_ORIENTATION = 0x0112  # EXIF orientation; 5..8 are rotations by 90 degrees (width and height swap)


def image_cache_path(dirname: str) -> str:
    """Where the verdicts for the VOC folder ``dirname`` are kept (see the module docstring)."""
    preferred = os.path.join(dirname, ".salfmix_cache")
    try:
        os.makedirs(preferred, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return os.path.join(preferred, CACHE_FILE)
    except OSError:
        pass
    digest = hashlib.sha256(os.path.realpath(dirname).encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".cache", "salfmix", digest, CACHE_FILE)


def _read_cache(path: str) -> dict[str, list[int]]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _VERSION or not isinstance(data.get("images"), dict):
        return {}
    return data["images"]


def _write_cache(path: str, images: dict[str, list[int]]) -> None:
    try:
        note = (
            "images that decoded and matched their annotation's size: [bytes, mtime_ns, width, height]; delete freely"
        )
        atomic_write_json(path, {"version": _VERSION, "note": note, "images": images}, indent=None)
    except RunError:  # only a cache: a read-only or full disk must not stop training
        pass


def _check_one(path: str, width: int, height: int, xml_file: str) -> str | None:
    """None if ``path`` decodes and its (EXIF-rotated) size is ``width`` x ``height``; else the error line."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(_ORIENTATION) in (5, 6, 7, 8):
                w, h = h, w
            if (w, h) != (width, height):
                return (
                    f"{path}: the image is {w}x{h} but {xml_file} says <size> {width}x{height} "
                    "(Detectron2 would stop with 'Mismatched image shape')"
                )
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            im.load()
    except Image.DecompressionBombError as err:
        return f"{path}: refused by PIL ({err})"
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        return f"{path}: not a readable image ({reason})"
    return None


def check_voc_images(
    dirname: str, split: str, sizes: dict[str, tuple[int, int]], threads: int = 8, cache_path: str | None = None
) -> int:
    """Check the image of every id in ``sizes`` (``{image_id: (width, height)}`` from the
    annotations of ``split``); returns how many were decoded now (the others were remembered).

    Raises :class:`DetectionSetupError` for a missing image, one that does not decode, or one
    whose size differs from its annotation, naming the first such file in split order.
    """
    cache_path = cache_path or image_cache_path(dirname)
    known = _read_cache(cache_path)
    todo: list[tuple[str, str, int, int, list[int]]] = []
    for image_id, (width, height) in sizes.items():
        name = f"{image_id}.jpg"
        path = os.path.join(dirname, "JPEGImages", name)
        try:
            st = os.stat(path)
        except OSError:
            raise DetectionSetupError(f"{path}: image not found (listed in {split}.txt)") from None
        entry = [st.st_size, st.st_mtime_ns, width, height]
        if known.get(name) != entry:
            todo.append((name, path, width, height, entry))
    if not todo:
        return 0
    workers = max(1, min(threads, len(todo), os.cpu_count() or 1))
    xml = os.path.join(dirname, "Annotations")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        verdicts = list(pool.map(lambda t: _check_one(t[1], t[2], t[3], os.path.join(xml, t[0][:-4] + ".xml")), todo))
    for (name, _path, _w, _h, entry), error in zip(todo, verdicts):
        if error is None:
            known[name] = entry
    _write_cache(cache_path, known)  # the good ones, also when a bad one follows
    bad = next((e for e in verdicts if e is not None), None)
    if bad is not None:
        count = sum(e is not None for e in verdicts)
        raise DetectionSetupError(bad + (f" (and {count - 1} more bad images in {split})" if count > 1 else ""))
    return len(todo)
