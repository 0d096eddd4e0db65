"""``build_data(cfg)``: datasets, the training loader and the device-side transforms."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import Tensor

from pretrain.data.augment import EvalTransform, TrainAugment
from pretrain.data.cache import PackedDataset, load_dataset, stratified_indices
from pretrain.data.loader import BatchLoader
from pretrain.engine import distributed as dist_utils


@dataclass
class TrainingData:
    """What the trainer reads: datasets, loader, transforms, and the sizes they imply."""

    train: PackedDataset
    test: PackedDataset
    train_loader: BatchLoader
    train_augment: TrainAugment
    test_transform: EvalTransform
    test_batch_size: int
    rank: int
    world: int

    @property
    def num_classes(self) -> int:
        """Number of classes of the training set."""
        return self.train.num_classes

    @property
    def classes(self) -> list[str]:
        """Class names of the training set."""
        return list(self.train.classes)

    @property
    def input_size(self) -> int:
        """Side of the images the model sees."""
        return self.train_augment.output_size

    def test_batches(self, split: str = "test") -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's share of the test set, or of the training images with ``split="train"``
        (unaugmented; every sample exactly once over all ranks)."""
        dataset = self.train if split == "train" else self.test
        indices = np.arange(self.rank, len(dataset), self.world)
        for start in range(0, len(indices), self.test_batch_size):
            chunk = indices[start : start + self.test_batch_size]
            labels = np.asarray(dataset.labels[chunk]).astype(np.int64, copy=False)
            yield torch.from_numpy(np.asarray(dataset.images[chunk])), torch.from_numpy(labels)


def load_splits(cfg: CfgNode, rank: int) -> tuple[PackedDataset, PackedDataset]:
    """The train and test splits of ``cfg.DATA``; under torch.distributed rank 0 loads first.

    Packing on first use happens on rank 0 alone; the other ranks wait for it (one broadcast,
    which also carries rank 0's error, if any, so no rank hangs) and then open its packs. A rank
    that cannot see them (node-local disks) packs its own copy, which the cache's build-then-rename
    makes safe even when several processes do it at once.
    """
    cache_dir = cfg.DATA.CACHE_DIR or None

    def load() -> tuple[PackedDataset, PackedDataset]:
        return tuple(
            load_dataset(cfg.DATA.NAME, cfg.DATA.ROOT, split, cache_dir, progress=rank == 0)
            for split in (cfg.DATA.TRAIN_SPLIT, cfg.DATA.TEST_SPLIT)
        )

    splits, failure = None, None
    if rank == 0:
        try:
            splits = load()
        except Exception as err:  # release the waiting ranks with the reason, then fail here too
            dist_utils.broadcast_object((type(err).__name__, str(err)))
            raise
    failure = dist_utils.broadcast_object(failure)
    if failure is not None:
        kind, message = failure
        error = FileNotFoundError if kind == "FileNotFoundError" else ValueError
        raise error(f"rank 0 failed to load the data: {message}")
    return splits if splits is not None else load()


def training_subset(cfg: CfgNode, train: PackedDataset) -> PackedDataset:
    """``train`` itself, or its stratified ``DATA.TRAIN_PER_CLASS`` subset drawn with ``DATA.SUBSET_SEED``.

    The draw depends on the config and the packed labels only, so every rank, every resumed run
    and every ``SEED`` of a study trains on the same images.
    """
    if not cfg.DATA.TRAIN_PER_CLASS:
        return train
    try:
        idx = stratified_indices(train.labels, cfg.DATA.TRAIN_PER_CLASS, train.num_classes, cfg.DATA.SUBSET_SEED)
    except ValueError as err:
        raise ValueError(f"DATA.TRAIN_PER_CLASS: {err} in {train.name}/{train.split}") from None
    return train.subset(idx)


def build_data(cfg: CfgNode, rank: int, world: int, device: torch.device) -> TrainingData:
    """Load (and pack on first use) the train/test splits of ``cfg.DATA`` and build the loader."""
    if cfg.SOLVER.BATCH_SIZE % world:
        raise ValueError(f"SOLVER.BATCH_SIZE: {cfg.SOLVER.BATCH_SIZE} is not divisible by the {world} processes")
    train, test = load_splits(cfg, rank)
    train = training_subset(cfg, train)
    if test.num_classes != train.num_classes:
        raise ValueError(f"DATA.TEST_SPLIT: {test.num_classes} classes, the training split has {train.num_classes}")
    size = cfg.MODEL.INPUT_SIZE or int(train.images.shape[1])
    mean, std = tuple(cfg.AUG.MEAN), tuple(cfg.AUG.STD)
    augment = TrainAugment(
        size,
        scale=tuple(cfg.AUG.SCALE),
        ratio=tuple(cfg.AUG.RATIO),
        flip=cfg.AUG.FLIP,
        brightness=cfg.AUG.BRIGHTNESS,
        contrast=cfg.AUG.CONTRAST,
        saturation=cfg.AUG.SATURATION,
        mean=mean,
        std=std,
    )
    # Page-locked batches (where CUDA is available) make the copies to the device asynchronous.
    loader = BatchLoader(
        train,
        cfg.SOLVER.BATCH_SIZE // world,
        shuffle=True,
        drop_last=True,
        seed=cfg.SEED,
        rank=rank,
        world_size=world,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:  # drop_last: a batch larger than the shard would train nothing and "succeed"
        per_process = f" ({loader.batch_size} per process, {loader.num_samples} images each)" if world > 1 else ""
        raise ValueError(
            f"SOLVER.BATCH_SIZE: {cfg.SOLVER.BATCH_SIZE} is larger than the training set of "
            f"{len(train)} images{per_process}: no training step per epoch"
        )
    test_bs = max(1, cfg.TEST.BATCH_SIZE // world)
    return TrainingData(train, test, loader, augment, EvalTransform(size, mean=mean, std=std), test_bs, rank, world)
