"""The ``cached`` saliency source (our addition, not in the paper).

``fresh`` saliency costs one extra forward/backward per step (``gradient_saliency``). The cache
removes it: the training step already back-propagates to its input, so that input gradient,
reduced over channels (max |g| or RMS, as the mixer expects), is kept per dataset sample and
served at the sample's next visit (the next epoch) instead of a fresh pass.

Each visit sees another random-resized crop and flip of the sample, so the map is kept in the
coordinates of the *source* image, on a fixed ``grid`` (16 x 16 by default: 4-pixel cells at
64 px; the source side for pixel-level methods):

- storing: the output pixel (i, j) of a visit's crop ``(top, left, height, width, flip)`` resized
  to S x S comes from source point ``top + (i + 0.5) * height / S`` (the centre of the resize
  filter; columns mirrored when flipped), i.e. from one source cell. Each cell gets the mean
  saliency of the output pixels that came from it, counting only the pixels that still show the
  sample's own content at their own place (``MixResult.own``: not the partner's box, not the
  pasted P_l, not a Cutout hole). Each visit's cells are divided by their mean, so that cells
  written at different visits (different crops, zoom and training stage) compare on one relative
  scale; a cell seen before becomes the mean of its old and new values (an exponential average
  over visits with weight 1/2: the map of one crop is noisy, and averaging two visits raised the
  agreement below from 0.23 to 0.26 in a measurement on the demo data), cells the crop did not
  see keep what earlier visits stored;
- serving: the same map from output pixels to source cells reads the stored cells at the new
  visit's crop. Output pixels over cells never seen take the mean of the seen ones (neutral).
  A sample at its first visit gets a fresh pass. Which samples have been stored is known on the
  host (the loader's indices), so the step never reads the device to decide: a batch holding a
  first visit runs one fresh pass over the whole batch, and then every sample of it whose crop
  sees less than ``min_coverage`` of known cells takes the fresh map too; a batch of revisits
  only runs no pass at all (a revisit's unseen cells take the neutral fill). Under DDP each
  rank keeps its steps' maps and every rank stores all of them at the end of the epoch (one
  all-gather per epoch, not per step: a sample is visited once per epoch).

How it still differs from ``fresh``: the map is one visit old, comes from the model in train
mode (BatchNorm with batch statistics) and from the loss of the mixed image. How close it comes
is measured every epoch (:func:`cache_agreement`, logged as ``saliency_cache_agreement``).
Memory: N x grid x grid float32 (26 MB per 100,000 samples at 16 x 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pretrain.mixing.base import host_to_device
from pretrain.mixing.geometry import cell_kernel, extreme_cells
from pretrain.mixing.saliency import gradient_saliency, reduce_gradient

DEFAULT_GRID = 16


@dataclass
class CropGeometry:
    """Where each output pixel of a batch's crops comes from: flat source-cell indices [B, S_h, S_w]."""

    cells: Tensor


def source_cells(
    top: Tensor,
    left: Tensor,
    height: Tensor,
    width: Tensor,
    flip: Tensor,
    src_hw: tuple[int, int],
    out_hw: tuple[int, int],
    grid: tuple[int, int],
    device: torch.device,
) -> CropGeometry:
    """Flat index (row-major in ``grid``) of the source cell under each output pixel's centre.

    The crop boxes ``(top, left, height, width)`` and ``flip`` [B] are in source pixels, as
    :class:`pretrain.data.augment.AugmentParams` holds them; the output is ``out_hw``.
    """
    (sh, sw), (gh, gw) = out_hw, grid
    f64 = dict(dtype=torch.float64, device=device)
    # The crop parameters reach the device in one non-blocking copy.
    box = host_to_device({"box": torch.stack([top, left, height, width]).to(torch.float64), "flip": flip}, device)
    top, left, height, width = box["box"]
    k_h = torch.arange(sh, **f64).view(1, sh) + 0.5
    k_w = torch.arange(sw, **f64).view(1, sw) + 0.5
    flip = box["flip"].view(-1, 1)
    k_w = torch.where(flip, sw - k_w, k_w)  # mirrored column centre
    y = top.view(-1, 1) + k_h * height.view(-1, 1) / sh  # [B, S_h] source rows
    x = left.view(-1, 1) + k_w * width.view(-1, 1) / sw  # [B, S_w]
    cy = (y * gh / src_hw[0]).floor().long().clamp(0, gh - 1)
    cx = (x * gw / src_hw[1]).floor().long().clamp(0, gw - 1)
    return CropGeometry(cy.unsqueeze(2) * gw + cx.unsqueeze(1))


class SaliencyCache:
    """Relative saliency of every training sample on a fixed grid of its source image."""

    def __init__(
        self, num_samples: int, grid: tuple[int, int], reduction: str, device: torch.device, min_coverage: float = 0.5
    ) -> None:
        self.grid, self.reduction, self.min_coverage = tuple(grid), reduction, float(min_coverage)
        self.maps = torch.full((num_samples, self.grid[0] * self.grid[1]), float("nan"), device=device)
        # Host copy of which samples have been stored (by the loader's indices): read without the device.
        self.stored = np.zeros(num_samples, dtype=bool)

    def render(self, indices: Tensor, geometry: CropGeometry) -> tuple[Tensor, Tensor]:
        """Stored maps of ``indices`` read through a crop: saliency [B, S_h, S_w] (cells never seen
        filled with the mean of the seen ones) and the fraction [B] of the crop on seen cells."""
        b = indices.shape[0]
        cells = geometry.cells
        values = self.maps[indices].gather(1, cells.view(b, -1)).view_as(cells.float())
        seen = torch.isfinite(values)
        coverage = seen.flatten(1).float().mean(1)
        fill = values.nan_to_num(0.0).flatten(1).sum(1) / seen.flatten(1).sum(1).clamp(min=1)
        return torch.where(seen, values, fill.view(b, 1, 1)), coverage

    def lookup(self, indices: Tensor, geometry: CropGeometry) -> tuple[Tensor, Tensor]:
        """Saliency [B, S_h, S_w] for a batch and the mask [B] of samples that need a fresh pass."""
        maps, coverage = self.render(indices, geometry)
        return maps, coverage < self.min_coverage

    def observe(self, grad: Tensor, own: Tensor | None, geometry: CropGeometry) -> Tensor:
        """Cell maps [B, grid_h * grid_w] of one visit from its input gradient [B, C, S_h, S_w]:
        own-pixel mean per cell, divided by the visit's mean; NaN on cells the visit did not see."""
        b = grad.shape[0]
        saliency = reduce_gradient(grad.float(), self.reduction).flatten(1)  # [B, S_h * S_w]
        weight = torch.ones_like(saliency) if own is None else own.flatten(1).to(saliency.dtype)
        cells = geometry.cells.flatten(1)
        sums = saliency.new_zeros(b, self.maps.shape[1]).scatter_add_(1, cells, saliency * weight)
        counts = saliency.new_zeros(b, self.maps.shape[1]).scatter_add_(1, cells, weight)
        means = torch.where(counts > 0, sums / counts.clamp(min=1e-12), float("nan"))
        scale = means.nan_to_num(0.0).sum(1) / (counts > 0).sum(1).clamp(min=1)
        return means / torch.where(scale > 0, scale, 1.0).view(b, 1)

    def store(self, indices: Tensor, maps: Tensor, host_indices: np.ndarray) -> None:
        """Keep ``maps`` [B, cells] of ``indices`` (``host_indices`` the same, on the host): a cell
        seen before becomes the mean of its old and new values, a new cell takes the new value, an
        unseen one (NaN) keeps the old."""
        old, new = self.maps[indices], maps.to(self.maps.dtype)
        merged = torch.where(torch.isnan(old), new, 0.5 * (old + new))
        self.maps[indices] = torch.where(torch.isnan(new), old, merged)
        self.stored[np.asarray(host_indices)] = True

    def state_dict(self) -> dict[str, Any]:
        """The cache's content, for checkpoints."""
        return {
            "maps": self.maps.cpu(),
            "stored": torch.from_numpy(self.stored.copy()),
            "grid": self.grid,
            "reduction": self.reduction,
            "version": 2,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state.get("version") != 2 or state["maps"].shape != self.maps.shape:
            raise ValueError(
                f"saliency cache: the checkpoint's cache (shape {tuple(state['maps'].shape)}) is not this run's "
                f"{tuple(self.maps.shape)} source-grid cache"
            )
        self.maps.copy_(state["maps"])
        stored = state.get("stored")  # checkpoints before the host copy: the samples with a finite cell
        self.stored[:] = stored.numpy() if stored is not None else torch.isfinite(state["maps"]).any(1).numpy()


CHANCE_SHIFTS = 31  # partners per probe sample for the chance level (all others in a probe batch of <= 32)


def cache_agreement(
    cache: SaliencyCache,
    model: torch.nn.Module,
    images: Tensor,
    targets: Tensor,
    indices: Tensor,
    geometry: CropGeometry,
    n: int,
) -> Tensor:
    """Counts [4] of how well the cache predicts a fresh pass on a probe batch ``images``
    [B, C, S, S] (augmented with the crops of ``geometry``): samples whose served map has its most
    salient n x n cell where a fresh ``gradient_saliency`` pass has it, samples served; then the
    chance level: the same with the maps of the other samples of the batch, each sample's crop
    paired with up to ``CHANCE_SHIFTS`` others (the probe shifted by 1, 2, ...), summed. One
    shift alone gave a chance level that moved by +-0.05 between epochs on a 64-sample probe.
    Samples the cache would not serve (coverage below ``min_coverage``) are not counted."""
    kernel = cell_kernel(images.shape[-2], images.shape[-1], n)
    target = extreme_cells(gradient_saliency(model, images, targets, cache.reduction), kernel)[0]

    def count(source: Tensor) -> tuple[Tensor, Tensor]:
        served, missing = cache.lookup(source, geometry)
        hit = (extreme_cells(served, kernel)[0] == target).all(1) & ~missing
        return hit.sum(), (~missing).sum()

    hits, served = count(indices)
    chance = torch.zeros((), dtype=hits.dtype, device=hits.device)
    chance_served = torch.zeros_like(chance)
    for shift in range(1, min(len(indices), CHANCE_SHIFTS + 1)):
        h, s = count(indices.roll(shift))
        chance, chance_served = chance + h, chance_served + s
    return torch.stack([hits, served, chance, chance_served]).double()


def probe_size(num_samples: int) -> int:
    """Probe samples for :class:`CachedSaliency`'s agreement: 1/64 of the set, within [256, 1024]
    (all of a smaller set). 256 measures an agreement near 0.25 to about +-0.03 (binomial); 64
    gave +-0.05, enough for per-epoch values on the demo data to swing by 0.1. The fresh pass
    costs a forward and a backward to the input per probe sample: under 2% of an epoch from 16,000
    training images up, more below (40% on the demo's 400)."""
    return min(num_samples, max(256, min(1024, num_samples // 64)))


class CachedSaliency:
    """The training loop's side of the cache: what the mixer gets, what each backward stores, and
    the per-epoch agreement with fresh saliency. ``autocast`` is the loop's autocast factory."""

    def __init__(
        self,
        cache: SaliencyCache,
        model: torch.nn.Module,
        src_hw: tuple[int, int],
        out_hw: tuple[int, int],
        autocast: Any,
        probe: Tensor,
    ) -> None:
        self.cache, self.model, self.src_hw, self.out_hw, self.autocast = cache, model, src_hw, out_hw, autocast
        self.probe = probe  # fixed training-set indices
        self.counts = torch.zeros(2, dtype=torch.float64, device=cache.maps.device)  # fresh maps, served maps
        self.pending: list[tuple[Tensor, Tensor]] = []  # under DDP: this epoch's (indices, maps), stored at its end

    def geometry(self, params: Any) -> CropGeometry:
        """Source cells of a batch's augmentation parameters (``AugmentParams``)."""
        return source_cells(
            params.top,
            params.left,
            params.height,
            params.width,
            params.flip,
            self.src_hw,
            self.out_hw,
            self.cache.grid,
            self.cache.maps.device,
        )

    def saliency(
        self, x: Tensor, targets: Tensor, indices: Tensor, host_indices: Tensor, geometry: CropGeometry
    ) -> Tensor:
        """Saliency [B, S, S] for the mixer: the cached maps, with a fresh pass when the batch holds
        a sample never stored (decided on the host; see the module docstring). No read-back."""
        maps, missing = self.cache.lookup(indices, geometry)
        first = ~self.cache.stored[host_indices.numpy()]
        self.counts[1] += float(len(first))
        if first.any():  # a host array: no device read
            with self.autocast():
                fresh = gradient_saliency(self.model, x, targets, self.cache.reduction)
            missing = missing | host_to_device({"first": torch.from_numpy(first)}, missing.device)["first"]
            maps = torch.where(missing.view(-1, 1, 1), fresh.to(maps.dtype), maps)
            self.counts[0] += missing.sum()
        return maps

    def store(
        self, indices: Tensor, host_indices: Tensor, grad: Tensor, own: Tensor | None, geometry: CropGeometry
    ) -> None:
        """Keep this step's maps; under DDP at the end of the epoch, from every rank (every rank
        holds the whole cache)."""
        from pretrain.engine import distributed as dist_utils

        maps = self.cache.observe(grad, own, geometry)
        if dist_utils.world_size() > 1:
            self.pending.append((indices, maps))
        else:
            self.cache.store(indices, maps, host_indices.numpy())

    def end_epoch(self) -> None:
        """Under DDP: gather every rank's maps of the epoch and store them, step by step in rank
        order (the order a per-step gather would have stored them in). One all-gather per epoch."""
        from pretrain.engine import distributed as dist_utils

        if not self.pending:
            return
        steps = len(self.pending)
        indices = dist_utils.all_gather_cat(torch.stack([i for i, _ in self.pending]).unsqueeze(0))  # [world, steps, B]
        maps = dist_utils.all_gather_cat(
            torch.stack([m for _, m in self.pending]).unsqueeze(0)
        )  # [world, steps, B, cells]
        self.pending = []
        host = indices.cpu().numpy()  # once per epoch
        for step in range(steps):
            self.cache.store(
                indices[:, step].reshape(-1), maps[:, step].reshape(-1, maps.shape[-1]), host[:, step].reshape(-1)
            )

    def epoch_stats(
        self, images_u8: Tensor, targets: Tensor, augment: Any, n: int, generator: torch.Generator, batch_size: int
    ) -> dict[str, float]:
        """The agreement with fresh saliency on the probe (its images and labels given, uint8
        [K, H, W, 3] on the device), crops drawn from ``generator``; resets the fresh-pass count."""
        params = augment.sample_params(images_u8.shape[0], self.src_hw[0], self.src_hw[1], generator)
        geometry = self.geometry(params)
        totals = torch.zeros(4, dtype=torch.float64, device=self.cache.maps.device)
        for start in range(0, images_u8.shape[0], batch_size):
            part = slice(start, start + batch_size)
            x = augment.apply(images_u8[part], _slice_params(params, part))
            with self.autocast():
                totals += cache_agreement(
                    self.cache,
                    self.model,
                    x,
                    targets[part],
                    self.probe[part].to(x.device),
                    CropGeometry(geometry.cells[part]),
                    n,
                )
        hits, served, chance, served_chance = totals.tolist()
        fresh_maps, served_maps = self.counts.tolist()
        stats = {
            "saliency_cache_agreement": hits / served if served else float("nan"),
            "saliency_cache_agreement_chance": chance / served_chance if served_chance else float("nan"),
            "saliency_cache_probe": int(served),
            "saliency_cache_fresh_fraction": fresh_maps / max(served_maps, 1),
        }
        self.counts.zero_()
        return stats


def _slice_params(params: Any, part: slice) -> Any:
    """The augmentation parameters of a slice of the batch."""
    return type(params)(*(getattr(params, f)[part] for f in params.__dataclass_fields__))
