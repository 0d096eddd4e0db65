"""Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, arXiv:1708.07747) from its official IDX files.

::

    ROOT/train-images-idx3-ubyte.gz    60,000 training images, uint8 [N, 28, 28]
    ROOT/train-labels-idx1-ubyte.gz    their labels, uint8 [N], 0..9
    ROOT/t10k-images-idx3-ubyte.gz     10,000 test images
    ROOT/t10k-labels-idx1-ubyte.gz     their labels

The four files are exactly what the Fashion-MNIST project distributes (its README's download
links, or ``data/fashion`` of its repository) and what Debian's package ``dataset-fashion-mnist``
installs in :data:`DEFAULT_ROOT`. The un-gzipped names (without ``.gz``) are read too; when both
exist, the ``.gz`` file is used.

An IDX file is a big-endian header, then the data row-major: the magic number
``0x000008DD`` (two zero bytes, the type code ``0x08`` = unsigned byte, ``DD`` = the number of
dimensions: ``0x00000803`` for images, ``0x00000801`` for labels), one int32 per dimension,
then ``prod(dims)`` bytes. A corrupt or truncated gzip stream, a wrong magic, a header or data
shorter (or longer) than the dimensions say, images and labels of different counts and labels
outside 0..9 each raise a one-line ValueError naming the file.

Greyscale: the packed cache (:mod:`pretrain.data.cache`) stores RGB ``[N, H, W, 3]``, so
:func:`read_fashion_mnist` copies the grey channel into three identical channels. The model
therefore sees three equal input channels (its first convolution's three kernels act as one);
nothing else changes. Labels are the dataset's own (label ``k`` = ``CLASSES[k]``).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from salfmix.runs.files import atomic_write_bytes

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
# The dataset's documented labels, in label order.
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SPLITS = ("train", "test", "val")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
HOW_TO_GET = (
    "install Debian's dataset-fashion-mnist, or download the four official files "
    "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz of the Fashion-MNIST project into it"
)


def _split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"Fashion-MNIST split {split!r}: expected one of {SPLITS} ('val' means 'test')")
    return "test" if split == "val" else split


def fashion_files(root: str, split: str) -> list[str]:
    """``[images, labels]``: the IDX files of ``split`` under ``root`` (``.gz`` preferred); what the
    cache fingerprints."""
    split = _split(split)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Fashion-MNIST root {root!r} is not a folder ({HOW_TO_GET})")
    paths = []
    for stem in FILES[split]:
        for name in (stem + ".gz", stem):
            if os.path.isfile(os.path.join(root, name)):
                paths.append(os.path.join(root, name))
                break
        else:
            raise FileNotFoundError(
                f"{os.path.join(root, stem)}.gz not found (nor without .gz): not a Fashion-MNIST root ({HOW_TO_GET})"
            )
    return paths


def _read_bytes(path: str, limit: int | None = None) -> bytes:
    """The file's content (decompressed for ``.gz``), or its first ``limit`` bytes."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (an IDX file)")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        # EOFError: the gzip stream ends early (a truncated download); the others: damaged bytes.
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from None


def _parse_header(data: bytes, path: str, magic: int) -> tuple[int, ...]:
    ndim = magic & 0xFF
    need = 4 + 4 * ndim
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, too short for an IDX header (truncated file)")
    found = struct.unpack(">I", data[:4])[0]
    if found != magic:
        hint = "; the file is gzip-compressed: give it the .gz name" if data[:2] == b"\x1f\x8b" else ""
        raise ValueError(
            f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"(IDX unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}){hint}"
        )
    if len(data) < need:
        raise ValueError(f"{path}: {len(data)} bytes, the IDX header alone needs {need} (truncated file)")
    return struct.unpack(f">{ndim}I", data[4:need])


def idx_header(path: str, magic: int) -> tuple[int, ...]:
    """The dimensions in the header of the IDX file ``path`` (checked against ``magic``), reading nothing more."""
    return _parse_header(_read_bytes(path, 4 + 4 * (magic & 0xFF)), path, magic)


def read_idx(path: str, magic: int) -> np.ndarray:
    """The uint8 array of the IDX file ``path``, whose magic must be ``magic`` (e.g. :data:`IMAGES_MAGIC`)."""
    data = _read_bytes(path)
    dims = _parse_header(data, path, magic)
    start = 4 + 4 * len(dims)
    count = int(np.prod(dims, dtype=np.int64))
    if len(data) - start != count:
        state = "truncated file" if len(data) - start < count else "trailing bytes"
        raise ValueError(
            f"{path}: {len(data) - start} data bytes after the header, its dimensions "
            f"{list(dims)} need {count} ({state})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)


def read_fashion_mnist(root: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images uint8 ``[N, H, W, 3]`` (the grey channel three times), labels int64 ``[N]`` and class names.

    ``split`` is ``"train"`` (the ``train-*`` files) or ``"test"`` (``t10k-*``; ``"val"`` is an
    alias). Official files are 28 x 28; other sizes in the same format are accepted as written.
    """
    images_path, labels_path = fashion_files(root, split)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) == 0 or 0 in images.shape[1:]:
        raise ValueError(f"{images_path}: holds {list(images.shape)} images, expected at least one non-empty image")
    if len(labels) != len(images):
        raise ValueError(
            f"{labels_path}: {len(labels)} labels, but {images_path} holds {len(images)} images "
            "(expected one label per image)"
        )
    bad = labels >= len(CLASSES)
    if bad.any():
        raise ValueError(
            f"{labels_path}: label {int(labels[bad][0])} at index {int(np.argmax(bad))}, expected 0..{len(CLASSES) - 1}"
        )
    rgb = np.repeat(images[..., None], 3, axis=3)
    return rgb, labels.astype(np.int64), list(CLASSES)


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: str, array: np.ndarray, compress: bool = True) -> None:
    """Write uint8 ``array`` as an IDX file (gzip-compressed when ``compress``; mtime 0, so
    reproducible), atomically."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(
            f"write_idx {path}: expected uint8 labels [N] or images [N, H, W], got {array.dtype} {list(array.shape)}"
        )
    data = _idx_bytes(array, IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC)
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if compress else data)


def write_fashion_mnist(
    root: str,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    compress: bool = True,
) -> list[str]:
    """Write the four official files under ``root`` (created); returns their paths.

    Images are greyscale uint8 ``[N, H, W]`` (``[N, H, W, 3]`` with equal channels is accepted
    and written as its first channel); labels are integers in 0..9. ``compress=False`` writes the
    un-gzipped names. Each file is written atomically, labels after images.
    """
    os.makedirs(root, exist_ok=True)
    paths = []
    for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim == 4 and images.shape[3] == 3:
            if not (images == images[..., :1]).all():
                raise ValueError(
                    f"write_fashion_mnist {split}_images: the 3 channels differ (Fashion-MNIST is greyscale)"
                )
            images = images[..., 0]
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(
                f"write_fashion_mnist {split}_images: expected uint8 [N, H, W], got {images.dtype} {list(images.shape)}"
            )
        if labels.shape != (len(images),) or ((labels < 0) | (labels >= len(CLASSES))).any():
            raise ValueError(
                f"write_fashion_mnist {split}_labels: expected {len(images)} integers in 0..{len(CLASSES) - 1}"
            )
        suffix = ".gz" if compress else ""
        image_path, label_path = (os.path.join(root, stem + suffix) for stem in FILES[split])
        write_idx(image_path, images, compress)
        write_idx(label_path, labels.astype(np.uint8), compress)
        paths += [image_path, label_path]
    return paths
