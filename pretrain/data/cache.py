"""Pack a dataset split once into a memory-mapped uint8 array, and load it back.

A packed split is a folder ``<cache_dir>/<name>-<split>-<size>-<fingerprint[:16]>/`` holding

- ``images.npy``: uint8 ``[N, H, W, 3]`` (RGB), opened with ``np.load(mmap_mode="r")``;
- ``labels.npy``: int64 ``[N]``;
- ``meta.json``: name, split, classes, shape, the source fingerprint and how it was made.

The fingerprint hashes the source files' relative paths, sizes and mtimes (every image for
TinyImageNet plus ``wnids.txt`` / ``val_annotations.txt``; the pickles for CIFAR; the two IDX
files of the split for Fashion-MNIST), the requested
size and the cache format version, so any change to the source selects a new folder and the split
is repacked; older packs of the same split are then removed. A pack is built in a ``.tmp-*``
folder and renamed into place only when complete, so an interrupted build never looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile
from tqdm import tqdm

from salfmix.errors import WriteError
from salfmix.runs.files import describe_os_error

from .sources import open_split

CACHE_VERSION = 1
SizeArg = int | tuple[int, int] | None


@dataclass
class PackedDataset:
    """A packed split: ``images`` np.memmap uint8 ``[N, H, W, 3]``, ``labels`` int64 ``[N]``.

    ``indices`` is None for a whole split; for a :meth:`subset` it holds the (sorted) positions
    of its samples in the packed split, and ``images`` is an in-memory copy of those.
    """

    images: np.memmap
    labels: np.ndarray
    classes: list[str]
    name: str
    split: str
    path: str
    indices: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of ``classes``)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return np.asarray(self.images[index]), int(self.labels[index])

    def subset(self, indices: np.ndarray) -> PackedDataset:
        """The samples at ``indices`` (sorted, distinct positions in this split), copied into memory."""
        indices = np.asarray(indices, dtype=np.int64)
        if (
            indices.ndim != 1
            or (np.diff(indices) <= 0).any()
            or (len(indices) and not 0 <= indices[0] <= indices[-1] < len(self))
        ):
            raise ValueError(f"{self.name}/{self.split} subset: expected increasing indices in [0, {len(self)})")
        base = self.indices if self.indices is not None else np.arange(len(self))
        return PackedDataset(
            np.ascontiguousarray(self.images[indices]),
            self.labels[indices].copy(),
            list(self.classes),
            self.name,
            self.split,
            self.path,
            base[indices],
        )


def stratified_indices(labels: np.ndarray, per_class: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` samples of each of the ``num_classes`` classes.

    Each class's positions are permuted by one ``np.random.default_rng(seed)``, class 0 first, and
    the first ``per_class`` kept; so the choice depends only on (labels, per_class, seed), and with
    the same seed a smaller ``per_class`` picks a subset of a larger one's. A class with fewer
    samples raises ValueError.
    """
    labels = np.asarray(labels)
    if per_class < 1:
        raise ValueError(f"per_class={per_class}: expected at least 1")
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"{per_class} per class asked, class {c} has only {len(members)} samples")
        picked.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(picked))


def _hw(size: SizeArg) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size={size!r}: expected a positive int or (height, width)")
    return int(h), int(w)


def decode_image(path: str, size: tuple[int, int] | None = None, expect: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one image file to uint8 RGB ``[H, W, 3]``.

    Greyscale / palette / CMYK images are converted to RGB. With ``size=(h, w)`` the image is
    resized (bilinear, antialiased when shrinking); otherwise, when ``expect=(h, w)`` is given, an
    image of another size is refused. Unreadable or truncated files raise ValueError naming them.
    """
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file must fail here, not be padded silently
            if im.mode != "RGB":
                im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot decode image ({e})") from None
    if size is None and expect is not None and array.shape[:2] != tuple(expect):
        raise ValueError(
            f"{path}: image is {array.shape[0]}x{array.shape[1]}, the split's first image is {expect[0]}x{expect[1]}"
            " (pass size= to resize all)"
        )
    return array


def _fingerprint(files: Sequence[str], base: str, header: str) -> str:
    h = hashlib.sha256(header.encode())
    for path in sorted(files):
        st = os.stat(path)
        h.update(f"\n{os.path.relpath(path, base)}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def default_cache_dir(root: str) -> str:
    """``<root>/.salfmix_cache`` when writable, else ``~/.cache/salfmix/<hash of root>``."""
    preferred = os.path.join(root, ".salfmix_cache")
    if _writable_dir(preferred):
        return preferred
    digest = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".cache", "salfmix", digest)


def _open_pack(path: str, fingerprint: str) -> PackedDataset | None:
    """The pack at ``path`` if it is complete and made from ``fingerprint``, else None."""
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("fingerprint") != fingerprint or meta.get("version") != CACHE_VERSION:
            return None
        images = np.load(os.path.join(path, "images.npy"), mmap_mode="r")
        labels = np.load(os.path.join(path, "labels.npy"))
    except (OSError, ValueError, KeyError):
        return None
    if list(images.shape) != meta["shape"] or images.dtype != np.uint8 or labels.shape != (images.shape[0],):
        return None
    return PackedDataset(
        images, labels.astype(np.int64, copy=False), list(meta["classes"]), meta["name"], meta["split"], path
    )


def _fsync(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _build(
    tmp: str,
    num: int,
    shape_hw: tuple[int, int],
    fill: Callable[[np.memmap, tqdm], None],
    labels: np.ndarray,
    meta: dict,
    progress: bool,
) -> None:
    images_path = os.path.join(tmp, "images.npy")
    images = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(num, *shape_hw, 3))
    # The memmap is a sparse file: on a full disk a write into it is a SIGBUS, not an error.
    # Allocating every block first turns that into ENOSPC here.
    with open(images_path, "rb+") as f:
        os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    with tqdm(total=num, desc=f"packing {meta['name']}/{meta['split']}", unit="img", disable=not progress) as bar:
        fill(images, bar)
    images.flush()
    del images
    _fsync(images_path)
    np.save(os.path.join(tmp, "labels.npy"), labels.astype(np.int64))
    meta_path = os.path.join(tmp, "meta.json")
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _fill_from_files(paths: list[str], size: tuple[int, int] | None, first_hw: tuple[int, int], num_workers: int):
    def fill(images: np.memmap, bar: tqdm) -> None:
        def one(i: int) -> None:
            images[i] = decode_image(paths[i], size, expect=first_hw)

        # Pillow releases the GIL while decoding, so threads scale; chunks bound the pending futures.
        chunk = 256 * num_workers
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            for start in range(0, len(paths), chunk):
                stop = min(start + chunk, len(paths))
                for _ in pool.map(one, range(start, stop)):
                    pass
                bar.update(stop - start)

    return fill


def _fill_from_array(array: np.ndarray, size: tuple[int, int] | None):
    def fill(images: np.memmap, bar: tqdm) -> None:
        if size is None or tuple(array.shape[1:3]) == size:
            images[:] = array
            bar.update(len(array))
            return
        for i, image in enumerate(array):  # one-off resize at pack time, not a hot path
            images[i] = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))
            bar.update(1)

    return fill


def _prune(cache_dir: str, prefix: str, keep: str) -> None:
    """Remove older packs of the same split and build folders left by dead processes on this host."""
    host = socket.gethostname()
    for entry in os.listdir(cache_dir):
        path = os.path.join(cache_dir, entry)
        if entry.startswith(prefix) and path != keep:
            shutil.rmtree(path, ignore_errors=True)
        elif entry.startswith(".tmp-") and f"-{host}-" in entry:
            pid = entry.rsplit("-", 2)[-2]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)


def _check_free_space(cache_dir: str, need: int, what: str) -> None:
    """Refuse to start packing when the cache folder's disk has less than ``need`` bytes free."""
    free = shutil.disk_usage(cache_dir).free
    if free < need:
        raise WriteError(
            cache_dir,
            f"no space left for the cache of {what}: it needs {need / 2**20:.1f} MiB, "
            f"{free / 2**20:.1f} MiB are free (DATA.CACHE_DIR chooses another folder)",
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_dataset(
    name: str,
    root: str,
    split: str,
    cache_dir: str | None = None,
    size: SizeArg = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> PackedDataset:
    """Load split ``split`` of dataset ``name`` from ``root``, packing it first if needed.

    ``name`` is one of :data:`pretrain.data.sources.NAMES`: ``"tinyimagenet"`` (split ``"train"``
    / ``"val"``), ``"cifar10"``, ``"cifar100"`` or ``"fashion_mnist"`` (``"train"`` / ``"test"``,
    ``"val"`` = ``"test"``; Fashion-MNIST's grey channel is stored three times). ``size`` (int or
    ``(h, w)``) resizes every image at pack time; without it all images must share the first
    one's size. ``num_workers`` decoding threads (default: min(8, CPUs)). ``cache_dir`` defaults
    to :func:`default_cache_dir`.
    """
    hw = _hw(size)
    opened = open_split(name, root, split)
    sources, base, split = opened.sources, opened.base, opened.split
    tag = "native" if hw is None else f"{hw[0]}x{hw[1]}"
    fingerprint = _fingerprint(sources, base, f"salfmix-cache v{CACHE_VERSION} {name} {split} {tag}")
    cache_dir = cache_dir or default_cache_dir(root)
    os.makedirs(cache_dir, exist_ok=True)
    prefix = f"{name}-{split}-{tag}-"
    final = os.path.join(cache_dir, prefix + fingerprint[:16])
    pack = _open_pack(final, fingerprint)
    if pack is not None:
        return pack
    if os.path.exists(final):  # incomplete or foreign content under our name
        shutil.rmtree(final)

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ValueError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated images would be packed silently")
    images, labels, classes = opened.read()
    if isinstance(images, np.ndarray):
        shape_hw = hw or images.shape[1:3]
        fill = _fill_from_array(images, hw)
    else:
        shape_hw = decode_image(images[0], hw).shape[:2]
        fill = _fill_from_files(images, hw, shape_hw, num_workers or min(8, os.cpu_count() or 1))
    meta = {
        "version": CACHE_VERSION,
        "name": name,
        "split": split,
        "classes": classes,
        "num_classes": len(classes),
        "shape": [len(labels), int(shape_hw[0]), int(shape_hw[1]), 3],
        "size": tag,
        "fingerprint": fingerprint,
        "source": {"root": os.path.realpath(base), "num_files": len(sources)},
        "note": "generated by pretrain.data.cache from the source files; delete freely, it is rebuilt on demand",
    }
    tmp = os.path.join(cache_dir, f".tmp-{prefix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    need = len(labels) * int(shape_hw[0]) * int(shape_hw[1]) * 3 + 9 * len(labels) + (1 << 20)
    _check_free_space(cache_dir, need, f"{name}/{split}")
    os.makedirs(tmp)
    try:
        try:
            _build(tmp, len(labels), tuple(shape_hw), fill, labels, meta, progress)
        except OSError as err:  # ENOSPC from the preallocation or a write, a quota, a read-only disk
            if isinstance(err, FileNotFoundError):  # a source file went missing: decode_image names it
                raise
            raise WriteError(
                f"{tmp} (packing {name}/{split} into the cache folder {cache_dir})", describe_os_error(err)
            ) from None
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process (e.g. another DDP rank) finished the same pack first: use theirs.
            pack = _open_pack(final, fingerprint)
            if pack is None:
                raise
            return pack
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    _prune(cache_dir, prefix, final)
    pack = _open_pack(final, fingerprint)
    if pack is None:
        raise ValueError(f"{final}: the pack just written does not read back (disk full or concurrent deletion?)")
    return pack
