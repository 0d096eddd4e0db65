"""Training-input throughput: packed cache + BatchLoader + TrainAugment vs. ImageFolder + PIL transforms.

Both paths produce the same thing: normalised float32 ``[B, 3, S, S]`` batches of random resized
crops, flipped and colour-jittered, on ``device``. Ours reads decoded uint8 images from the
memory-mapped pack and augments the batch on the device; the baseline decodes JPEGs and
transforms each image with PIL in 2 DataLoader worker processes. Packing (a one-off) and worker
start-up are excluded: the first ``warmup`` batches of each path are not timed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from pretrain.data.augment import IMAGENET_MEAN, IMAGENET_STD, TrainAugment
from pretrain.data.cache import load_dataset
from pretrain.data.loader import BatchLoader, keep_freed_memory
from pretrain.data.tinyimagenet import resolve_root


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_batches(
    batches: Callable[[], Iterator[Tensor]], num_batches: int, warmup: int, device: torch.device
) -> float:
    """Images per second over ``num_batches`` batches after ``warmup`` untimed ones; ``batches()``
    starts a new epoch and is called again as often as needed."""
    count, images = 0, 0
    start = time.perf_counter()
    while True:
        for x in batches():
            count += 1
            if count == warmup:
                _sync(device)
                start = time.perf_counter()
            elif count > warmup:
                images += x.shape[0]
                if count == warmup + num_batches:
                    _sync(device)
                    return images / (time.perf_counter() - start)


def loader_throughput(
    root: str,
    batch_size: int = 128,
    num_batches: int = 20,
    output_size: int = 64,
    device: str = "cpu",
    num_workers: int = 2,
    jitter: tuple[float, float, float] = (0.4, 0.4, 0.4),
    warmup: int = 2,
    cache_dir: str | None = None,
    tune_malloc: bool = True,
) -> dict[str, object]:
    """Images/s of both input pipelines on TinyImageNet's train split at ``root``.

    ``jitter`` is (brightness, contrast, saturation), used by both. ``tune_malloc`` applies
    :func:`pretrain.data.loader.keep_freed_memory` (process-wide, to both pipelines). Returns
    ``ours_images_per_s``, ``imagefolder_images_per_s``, ``loader_speedup_vs_imagefolder`` and
    the settings measured; every value is a number (callers may ``float()`` them all).
    """
    from torchvision import datasets, transforms

    dev = torch.device(device)
    # Before the DataLoader forks its workers, so both pipelines run with the same allocator settings.
    malloc_tuned = keep_freed_memory() if tune_malloc else False
    dataset = load_dataset("tinyimagenet", root, "train", cache_dir=cache_dir, progress=False)
    if len(dataset) < batch_size:
        raise ValueError(
            f"loader_throughput: {root} has {len(dataset)} training images, fewer than batch_size={batch_size}"
        )
    loader = BatchLoader(dataset, batch_size, shuffle=True, drop_last=True, seed=0, pin_memory=dev.type == "cuda")
    augment = TrainAugment(
        output_size,
        brightness=jitter[0],
        contrast=jitter[1],
        saturation=jitter[2],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    generator = torch.Generator().manual_seed(0)
    epoch = [0]

    def ours() -> Iterator[Tensor]:
        loader.set_epoch(epoch[0])
        epoch[0] += 1
        for images, _, _ in loader:
            yield augment(images.to(dev, non_blocking=True), generator)

    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(output_size),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(*jitter),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    folder = datasets.ImageFolder(os.path.join(resolve_root(root), "train"), transform=tf)
    baseline = torch.utils.data.DataLoader(
        folder, batch_size, shuffle=True, drop_last=True, num_workers=num_workers, persistent_workers=num_workers > 0
    )

    def theirs() -> Iterator[Tensor]:
        for images, _ in baseline:
            yield images.to(dev, non_blocking=True)

    ours_rate = _time_batches(ours, num_batches, warmup, dev)
    theirs_rate = _time_batches(theirs, num_batches, warmup, dev)
    baseline = None  # stops the persistent workers
    return {
        "ours_images_per_s": ours_rate,
        "imagefolder_images_per_s": theirs_rate,
        "loader_speedup_vs_imagefolder": ours_rate / theirs_rate,
        "batch_size": batch_size,
        "num_batches": num_batches,
        "output_size": output_size,
        "imagefolder_workers": num_workers,
        "torch_threads": torch.get_num_threads(),
        "train_images": len(dataset),
        "malloc_tuned": malloc_tuned,
    }
