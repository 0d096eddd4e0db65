"""CIFAR-10 / CIFAR-100 in the official "python version" layout: read and write.

::

    cifar-10-batches-py/   data_batch_1..5, test_batch, batches.meta
                           batch: {b"data": uint8 [N, 3072], b"labels": [int], b"batch_label", b"filenames"}
                           meta:  {b"label_names": [bytes], b"num_cases_per_batch", b"num_vis"}
    cifar-100-python/      train, test, meta
                           batch: {b"data", b"fine_labels", b"coarse_labels", b"batch_label", b"filenames"}
                           meta:  {b"fine_label_names": [bytes], b"coarse_label_names": [bytes]}

A row of ``data`` is the red plane, then green, then blue, each 32 x 32 row-major. The official
files are Python 2 pickles (protocol 2) whose ``str`` objects load as ``bytes`` with
``encoding="bytes"`` and as ``str`` with ``encoding="latin1"`` (torchvision's reader); the writer
reproduces that byte for byte in kind, so either reader reads what it writes.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from salfmix.runs.files import atomic_write_bytes

VARIANTS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{k}" for k in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "labels": b"labels",
        "names": b"label_names",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "labels": b"fine_labels",
        "names": b"fine_label_names",
    },
}
SPLITS = ("train", "test", "val")

# Everything the official pickles reference; anything else is refused rather than executed.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"references {module}.{name}, which a CIFAR file never does")
        if module.startswith("numpy.core."):
            # numpy 2 renamed numpy.core to numpy._core; going there directly avoids its shim's warning.
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _load_pickle(path: str) -> dict[bytes, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (a CIFAR python-version file)")
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise ValueError(f"{path}: not a readable CIFAR pickle ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    # Accept str keys too (files re-pickled by Python 3 code); the official ones are bytes.
    return {k.encode("latin1") if isinstance(k, str) else k: v for k, v in obj.items()}


def _require(d: dict[bytes, Any], key: bytes, path: str) -> Any:
    if key not in d:
        raise ValueError(f"{path}: expected key {key!r} in the pickled dict, found {sorted(d)}")
    return d[key]


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def resolve_cifar(root: str, variant: str | None = None) -> tuple[str, str]:
    """``(folder, variant)``: the folder holding the pickles, found at ``root`` or under it.

    ``variant`` ("cifar10" / "cifar100") is inferred from the files when not given.
    """
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"CIFAR variant {variant!r}: expected one of {sorted(VARIANTS)}")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"CIFAR root {root!r} is not a folder")
    found = []
    for name in [variant] if variant else sorted(VARIANTS):
        spec = VARIANTS[name]
        for folder in (root, os.path.join(root, spec["folder"])):
            if os.path.isfile(os.path.join(folder, spec["meta"])):
                found.append((folder, name))
                break
    if not found:
        names = [variant] if variant else sorted(VARIANTS)
        wanted = " or ".join(f"{VARIANTS[n]['folder']}/{VARIANTS[n]['meta']}" for n in names)
        raise FileNotFoundError(f"{root}: no {wanted} at or under it (not a CIFAR root)")
    if len(found) > 1:
        raise ValueError(f"{root} holds both CIFAR-10 and CIFAR-100: pass variant='cifar10' or 'cifar100'")
    return found[0]


def cifar_files(root: str, split: str, variant: str | None = None) -> list[str]:
    """The pickle files a split is read from (meta first): what the cache fingerprints."""
    folder, variant = resolve_cifar(root, variant)
    spec = VARIANTS[variant]
    return [os.path.join(folder, f) for f in [spec["meta"]] + spec[_split(split)]]


def _split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"CIFAR split {split!r}: expected one of {SPLITS} ('val' means 'test')")
    return "test" if split == "val" else split


def read_cifar(root: str, split: str, variant: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images uint8 ``[N, 32, 32, 3]``, labels int64 ``[N]`` and class names of one split.

    ``root`` is ``cifar-10-batches-py`` / ``cifar-100-python`` or a folder containing one;
    ``split`` is ``"train"`` or ``"test"`` (``"val"`` is an alias of ``"test"``). CIFAR-100
    labels are the fine (100-class) labels.
    """
    split = _split(split)
    folder, variant = resolve_cifar(root, variant)
    spec = VARIANTS[variant]
    meta_path = os.path.join(folder, spec["meta"])
    classes = [_text(n) for n in _require(_load_pickle(meta_path), spec["names"], meta_path)]
    images, labels = [], []
    for name in spec[split]:
        path = os.path.join(folder, name)
        batch = _load_pickle(path)
        data = np.asarray(_require(batch, b"data", path))
        y = np.asarray(_require(batch, spec["labels"], path))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{path}: b'data' is {data.dtype} {list(data.shape)}, expected uint8 [N, 3072]")
        if y.ndim != 1 or len(y) != len(data) or (len(y) and not np.issubdtype(y.dtype, np.integer)):
            raise ValueError(f"{path}: {spec['labels']!r} must be {len(data)} integers, one per row of b'data'")
        bad = (y < 0) | (y >= len(classes))
        if bad.any():
            raise ValueError(f"{path}: label {int(y[bad][0])} outside the {len(classes)} classes of {meta_path}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y.astype(np.int64))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), classes


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol-2 pickler that writes ``bytes`` as Python 2 ``str`` (BINSTRING), like the official files.

    Python 3's own protocol-2 pickler writes ``bytes`` as ``_codecs.encode(unicode, "latin1")``,
    which loads as ``bytes`` whatever the reader's ``encoding=`` (breaking ``encoding="latin1"``
    readers such as torchvision) and doubles the size of the image data.
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core."):
            # numpy 2's reconstructor lives in numpy._core; the official files (and numpy 1) say numpy.core.
            qualname = name or obj.__name__
            legacy = "numpy.core." + module[len("numpy._core.") :]
            self.write(pickle.GLOBAL + legacy.encode() + b"\n" + qualname.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _write_pickle(path: str, obj: dict[bytes, Any]) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    atomic_write_bytes(path, buf.getvalue())


def _check_split(images: np.ndarray, labels: np.ndarray, num_classes: int, what: str) -> tuple[np.ndarray, list[int]]:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(
            f"write_cifar {what}_images: expected uint8 [N, 32, 32, 3], got {images.dtype} {list(images.shape)}"
        )
    if labels.shape != (len(images),) or ((labels < 0) | (labels >= num_classes)).any():
        raise ValueError(f"write_cifar {what}_labels: expected {len(images)} integers in [0, {num_classes})")
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)
    return data, [int(v) for v in labels]


def write_cifar(
    root: str,
    name: str,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    classes: Sequence[str],
) -> str:
    """Write a dataset in the official CIFAR python layout under ``root``; returns the folder.

    ``name`` is ``"cifar10"`` (``root/cifar-10-batches-py``: the train split spread over five
    ``data_batch_k`` files) or ``"cifar100"`` (``root/cifar-100-python``). Images are uint8
    ``[N, 32, 32, 3]``. For CIFAR-100 the coarse labels are ``fine // 5`` with generated
    superclass names (``superclass_00``...), since only the fine classes are given. File names
    inside the batches are generated (``generated_000000.png``...). Each file is written atomically.
    """
    if name not in VARIANTS:
        raise ValueError(f"write_cifar name {name!r}: expected one of {sorted(VARIANTS)}")
    spec = VARIANTS[name]
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError("write_cifar classes: expected at least one class name")
    folder = os.path.join(root, spec["folder"])
    os.makedirs(folder, exist_ok=True)
    splits = {
        "train": _check_split(train_images, train_labels, len(classes), "train"),
        "test": _check_split(test_images, test_labels, len(classes), "test"),
    }
    names = [c.encode("utf-8") for c in classes]
    if name == "cifar10":
        meta = {b"num_cases_per_batch": -(-len(splits["train"][1]) // 5), b"label_names": names, b"num_vis": 3072}
    else:
        num_coarse = -(-len(classes) // 5)
        meta = {
            b"fine_label_names": names,
            b"coarse_label_names": [f"superclass_{k:02d}".encode() for k in range(num_coarse)],
        }
    start = 0
    for split, (data, labels) in splits.items():
        files = spec[split]
        for k, chunk in enumerate(np.array_split(np.arange(len(labels)), len(files))):
            batch_label = f"{'training' if split == 'train' else 'testing'} batch {k + 1} of {len(files)}"
            batch: dict[bytes, Any] = {
                b"batch_label": batch_label.encode(),
                spec["labels"]: [labels[i] for i in chunk],
                b"data": data[chunk],
                b"filenames": [f"generated_{start + i:06d}.png".encode() for i in range(len(chunk))],
            }
            if name == "cifar100":
                batch[b"coarse_labels"] = [labels[i] // 5 for i in chunk]
            start += len(chunk)
            _write_pickle(os.path.join(folder, files[k]), batch)
    # The meta file last: readers locate a CIFAR folder by it, so an interrupted write is not found.
    _write_pickle(os.path.join(folder, spec["meta"]), meta)
    return folder
