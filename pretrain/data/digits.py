"""The UCI handwritten digits (real data) re-laid out as a CIFAR-10 python-version folder.

scikit-learn ships the test part of the UCI "Optical Recognition of Handwritten Digits" data
(1797 greyscale 8 x 8 images, 10 classes, values 0..16) with no download. This module turns it
into ``DIR/cifar-10-batches-py`` so a study runs through exactly the CIFAR-10 code path:

- pixels ``v`` in 0..16 become ``round(v * 255 / 16)`` (uint8), the 8 x 8 image is upsampled to
  32 x 32 with PIL's bilinear filter (``Image.BILINEAR``) and copied into 3 identical channels;
- the split is stratified and fixed: per class, the images are permuted with
  ``numpy.random.default_rng(seed)`` and the first ``floor(n_c / 2)`` go to the training half,
  the rest to the test split (50% / 50% per class: 896 train / 901 test in all);
- ``train_per_class=K`` keeps the first K of each class's permuted training half (a low-data
  regime); the test split always stays whole.

Each dataset folder gets a ``DIGITS.txt`` marker saying what it holds and a ``split.json`` with
the scikit-learn indices of every split, so the split can be checked and reproduced.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from pretrain.data.cifar import write_cifar
from salfmix.runs.files import atomic_write_bytes

MARKER = "DIGITS.txt"
SPLIT_FILE = "split.json"
CLASSES = [f"digit_{k}" for k in range(10)]
SIZE = 32


def load_uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's UCI digits: images float ``[1797, 8, 8]`` in 0..16 and labels int64 ``[1797]``.

    Raises ImportError with the install hint when scikit-learn is missing.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "scikit-learn is needed for the UCI digits: pip install 'salfmix[study]' "
            "(or pip install 'scikit-learn>=1.3')"
        ) from None
    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def upsample(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Greyscale ``[N, h, w]`` in 0..16 to uint8 RGB ``[N, size, size, 3]`` (bilinear, 3 equal channels)."""
    grey = np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255.0 / 16.0), 0, 255).astype(np.uint8)
    out = np.empty((len(grey), size, size, 3), dtype=np.uint8)
    for i, im in enumerate(grey):
        big = np.asarray(Image.fromarray(im, mode="L").resize((size, size), Image.BILINEAR))
        out[i] = big[:, :, None]
    return out


def stratified_split(
    labels: np.ndarray, seed: int = 0, train_per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices ``(train, test)``: half of each class (floor) to train, the rest to test.

    With ``train_per_class=K`` only the first K of each class's (permuted) training half are
    kept; the test indices do not change. A K larger than some class's half raises ValueError.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        half = len(idx) // 2
        head = idx[:half]
        if train_per_class is not None:
            if train_per_class < 1 or train_per_class > half:
                raise ValueError(
                    f"train_per_class={train_per_class}: expected 1..{half} (class {int(c)} has {half} training images)"
                )
            head = head[:train_per_class]
        train.append(head)
        test.append(idx[half:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _marker_text(seed: int, train_per_class: int | None, n_train: int, n_test: int, n_all: int) -> str:
    regime = (
        f"{train_per_class} per class (a fixed subset of the training half)"
        if train_per_class
        else "the whole training half"
    )
    return (
        "UCI Optical Recognition of Handwritten Digits (scikit-learn's load_digits): REAL data,\n"
        "re-laid out in the CIFAR-10 python-version layout. It is NOT CIFAR-10.\n\n"
        f"source images: {n_all} greyscale 8x8, values 0..16, 10 classes\n"
        f"pixels: round(v * 255 / 16), upsampled to {SIZE}x{SIZE} with PIL bilinear, 3 identical channels\n"
        f"split: stratified 50% / 50% per class (floor of half to train), numpy default_rng({seed})\n"
        f"training images: {n_train} ({regime})\n"
        f"test images: {n_test} (the whole test half)\n"
        f"indices of each split (into load_digits order): {SPLIT_FILE}\n"
    )


def write_digits(out: str, seed: int = 0, train_per_class: int | None = None) -> dict[str, object]:
    """Write ``out/cifar-10-batches-py`` from the UCI digits; returns a summary dict.

    The summary has ``folder``, ``train`` / ``test`` counts and per-class ``train_counts`` /
    ``test_counts``. Every file is written atomically (the meta file last).
    """
    images, labels = load_uci_digits()
    train_idx, test_idx = stratified_split(labels, seed, train_per_class)
    pixels = upsample(images)
    folder = write_cifar(
        out, "cifar10", pixels[train_idx], labels[train_idx], pixels[test_idx], labels[test_idx], CLASSES
    )
    summary: dict[str, object] = {
        "folder": folder,
        "source": "UCI handwritten digits via sklearn.datasets.load_digits (real data)",
        "seed": seed,
        "train_per_class": train_per_class,
        "upsampling": f"PIL bilinear 8x8 -> {SIZE}x{SIZE}, 3 identical channels",
        "train": int(len(train_idx)),
        "test": int(len(test_idx)),
        "train_counts": np.bincount(labels[train_idx], minlength=10).tolist(),
        "test_counts": np.bincount(labels[test_idx], minlength=10).tolist(),
    }
    split = dict(summary, train_indices=train_idx.tolist(), test_indices=test_idx.tolist())
    atomic_write_bytes(os.path.join(folder, SPLIT_FILE), (json.dumps(split) + "\n").encode("utf-8"))
    text = _marker_text(seed, train_per_class, len(train_idx), len(test_idx), len(labels))
    atomic_write_bytes(os.path.join(folder, MARKER), text.encode("utf-8"))
    return summary
