"""pretrain.data.sources: one table of datasets, read by the config check and the pack cache."""

from __future__ import annotations

import os

import pytest

from pretrain.config import assert_cfg, get_cfg_defaults
from pretrain.data.sources import NAMES, open_split


def test_the_config_accepts_exactly_the_datasets_of_the_table() -> None:
    cfg = get_cfg_defaults()
    cfg.DATA.ROOT = "data"
    for name in NAMES:
        cfg.DATA.NAME = name
        assert_cfg(cfg)
    cfg.DATA.NAME = "imagenet"
    with pytest.raises(ValueError, match=r"DATA.NAME: expected one of \('tinyimagenet', 'cifar10'"):
        assert_cfg(cfg)


def test_an_opened_split_names_its_files_and_reads_its_images(demo_root) -> None:
    tiny = open_split("tinyimagenet", os.path.join(demo_root, "tiny-imagenet-200"), "val")
    paths, labels, classes = tiny.read()
    assert tiny.split == "val" and len(paths) == len(labels) == 4 * 5 and len(classes) == 4
    assert set(paths) <= set(tiny.sources) and any(s.endswith("val_annotations.txt") for s in tiny.sources)
    cifar = open_split("cifar10", demo_root, "val")  # the array formats' val is their test split
    images, labels, _ = cifar.read()
    assert cifar.split == "test" and images.shape == (len(labels), 32, 32, 3) and images.dtype.name == "uint8"
    assert [os.path.basename(s) for s in cifar.sources] == ["batches.meta", "test_batch"]
    with pytest.raises(ValueError, match="dataset name 'svhn': expected one of"):
        open_split("svhn", demo_root, "train")
