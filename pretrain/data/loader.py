"""Batches straight from a packed (memory-mapped) split: a seeded sampler plus one read per batch.

No DataLoader workers are needed: the images are already decoded, so reading a batch is one numpy
fancy index into the memmap, and augmentation happens afterwards on the device
(:mod:`pretrain.data.augment`).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .cache import PackedDataset

Batch = tuple[Tensor, Tensor, Tensor]


def keep_freed_memory(trim_threshold: int = 1 << 30, mmap_threshold: int = 32 << 20) -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    A CPU training step allocates and frees the same multi-megabyte batch buffers every
    iteration; by default glibc unmaps / trims them, and re-faulting the pages costs more than the
    augmentation itself (measured: 10.5 ms -> 3.9 ms median for TrainAugment at batch 128, 64 px,
    2 cores). This sets ``M_MMAP_THRESHOLD`` (32 MiB, glibc's maximum) and ``M_TRIM_THRESHOLD``
    for the whole process (and processes forked after it), so it trades up to ``trim_threshold``
    bytes of retained heap for speed. Call it once at start-up. Returns False where not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    # M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1 in glibc's malloc.h; mallopt returns 1 on success.
    return bool(mallopt(-3, int(mmap_threshold))) and bool(mallopt(-1, int(trim_threshold)))


def epoch_indices(num: int, epoch: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """This rank's sample indices for ``epoch``, in order.

    The permutation depends only on ``(seed, epoch)`` (``np.random.default_rng([seed, epoch])``),
    so every rank and every resumed run computes the same one. Like ``DistributedSampler``, the
    order is padded to a multiple of ``world_size`` by repeating its head, then rank ``r`` takes
    positions ``r, r + world_size, ...``.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num) if shuffle else np.arange(num)
    total = -(-num // world_size) * world_size
    if total > num:
        order = np.concatenate([order, np.resize(order, total - num)])
    return order[rank::world_size].astype(np.int64)


class BatchLoader:
    """Iterate ``(images uint8 [B, H, W, 3], labels int64 [B], indices int64 [B])`` CPU tensors.

    ``indices`` point into the dataset (padding repeats some under ``world_size > 1``; use them to
    deduplicate evaluation). ``prefetch`` reads the next batch in a background thread while the
    current one is used; it changes timing only, never the order. ``pin_memory`` pins the batch
    (when CUDA is available) so ``.to(device, non_blocking=True)`` overlaps the copy.
    """

    def __init__(
        self,
        dataset: PackedDataset,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        prefetch: bool = True,
        pin_memory: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"BatchLoader batch_size={batch_size}: expected a positive integer")
        if world_size <= 0 or not 0 <= rank < world_size:
            raise ValueError(f"BatchLoader rank={rank}, world_size={world_size}: expected 0 <= rank < world_size")
        if len(dataset) == 0:
            raise ValueError(
                f"BatchLoader: dataset {getattr(dataset, 'name', '?')}/{getattr(dataset, 'split', '?')} is empty"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.prefetch = prefetch
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses."""
        self.epoch = int(epoch)

    @property
    def num_samples(self) -> int:
        """Samples per epoch on this rank, padding included."""
        return -(-len(self.dataset) // self.world_size)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def indices(self) -> np.ndarray:
        """This rank's sample order for the current epoch."""
        return epoch_indices(len(self.dataset), self.epoch, self.seed, self.shuffle, self.rank, self.world_size)

    def _read(self, idx: np.ndarray) -> Batch:
        images = torch.from_numpy(np.ascontiguousarray(self.dataset.images[idx]))
        labels = torch.from_numpy(self.dataset.labels[idx].astype(np.int64, copy=False))
        if self.pin_memory:
            images, labels = images.pin_memory(), labels.pin_memory()
        return images, labels, torch.from_numpy(idx)

    def __iter__(self) -> Iterator[Batch]:
        order = self.indices()
        batches = [order[k * self.batch_size : (k + 1) * self.batch_size] for k in range(len(self))]
        if not self.prefetch:
            for idx in batches:
                yield self._read(idx)
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-prefetch")
        try:
            pending: Future | None = pool.submit(self._read, batches[0]) if batches else None
            for k in range(len(batches)):
                batch = pending.result()
                pending = pool.submit(self._read, batches[k + 1]) if k + 1 < len(batches) else None
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def state_dict(self) -> dict[str, Any]:
        """The epoch to resume at (resumption happens at epoch boundaries) and the sampler's seed."""
        return {"epoch": self.epoch, "seed": self.seed, "shuffle": self.shuffle, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a different seed would silently change the order, so it is refused."""
        if "epoch" not in state:
            raise ValueError(f"BatchLoader.load_state_dict: expected key 'epoch', got {sorted(state)}")
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"BatchLoader.load_state_dict: saved seed {state['seed']} != this loader's seed {self.seed}"
            )
        self.epoch = int(state["epoch"])


class DevicePrefetcher:
    """Iterate ``loader``'s batches moved to ``device``, each batch's copy issued while the previous
    batch is in use (a ``BatchLoader`` built with ``pin_memory`` gives page-locked batches, so the
    copies are asynchronous).

    Yields ``(*tensors on device, indices on the host)``: the host copy of the last tensor (the
    dataset indices) is kept for bookkeeping that must not read the device. On CUDA the copies run
    on a side stream and the consuming stream waits for them (and the tensors are recorded on it,
    so the caching allocator does not reuse their memory early); elsewhere they are plain
    non-blocking copies (nothing at all on the CPU).
    """

    def __init__(self, loader: Any, device: torch.device) -> None:
        self.loader, self.device = loader, torch.device(device)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        cuda = self.device.type == "cuda" and torch.cuda.is_available()
        stream = torch.cuda.Stream(self.device) if cuda else None

        def issue(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            if stream is None:
                return tuple(t.to(self.device, non_blocking=True) for t in batch) + (batch[-1],)
            with torch.cuda.stream(stream):
                return tuple(t.to(self.device, non_blocking=True) for t in batch) + (batch[-1],)

        batches = iter(self.loader)
        first = next(batches, None)
        pending = issue(first) if first is not None else None
        while pending is not None:
            current = pending
            if stream is not None:
                consumer = torch.cuda.current_stream(self.device)
                consumer.wait_stream(stream)
                for t in current[:-1]:
                    t.record_stream(consumer)
            upcoming = next(batches, None)
            pending = issue(upcoming) if upcoming is not None else None
            yield current
