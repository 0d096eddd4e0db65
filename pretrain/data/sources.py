"""The datasets pretraining reads, one entry each in :data:`SOURCES`.

An entry opens a split of its dataset: the files its pack depends on (the cache fingerprints
them), the folder they are relative to, and how its images are read (image files for
TinyImageNet, one uint8 array for the array formats). The config's ``DATA.NAME`` check and the
pack cache (:mod:`pretrain.data.cache`) read this table, so a new dataset is a reader module and
one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .cifar import cifar_files, read_cifar, resolve_cifar
from .fashion_mnist import fashion_files, read_fashion_mnist
from .tinyimagenet import label_files, list_tinyimagenet, resolve_root

# (images, labels int64 [N], class names): images are file paths or a uint8 [N, H, W, 3] array.
Images = list[str] | np.ndarray
Read = Callable[[], tuple[Images, np.ndarray, list[str]]]


@dataclass(frozen=True)
class Split:
    """One opened split: ``split`` its canonical name ("val" is "test" where a dataset has no val),
    ``sources`` every file its content depends on, ``base`` their folder, ``read`` its images."""

    split: str
    sources: list[str]
    base: str
    read: Read


def _tinyimagenet(root: str, split: str) -> Split:
    # The listing is the expensive part (100k files): it is made once and read from memory.
    paths, labels, classes = list_tinyimagenet(root, split)
    return Split(split, label_files(root, split) + paths, resolve_root(root), lambda: (paths, labels, classes))


def _cifar(variant: str) -> Callable[[str, str], Split]:
    def open_split(root: str, split: str) -> Split:
        sources = cifar_files(root, split, variant)
        return Split(
            _test_for_val(split), sources, resolve_cifar(root, variant)[0], lambda: read_cifar(root, split, variant)
        )

    return open_split


def _fashion_mnist(root: str, split: str) -> Split:
    return Split(_test_for_val(split), fashion_files(root, split), root, lambda: read_fashion_mnist(root, split))


def _test_for_val(split: str) -> str:
    """The array formats have a train and a test split; "val" names the test split."""
    return "test" if split == "val" else split


SOURCES: dict[str, Callable[[str, str], Split]] = {
    "tinyimagenet": _tinyimagenet,
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
    "fashion_mnist": _fashion_mnist,
}
NAMES = tuple(SOURCES)


def open_split(name: str, root: str, split: str) -> Split:
    """Split ``split`` of dataset ``name`` under ``root``; raises ValueError for an unknown name
    and the reader's FileNotFoundError / ValueError (naming the file) for missing or bad data."""
    if name not in SOURCES:
        raise ValueError(f"dataset name {name!r}: expected one of {NAMES}")
    return SOURCES[name](root, split)
