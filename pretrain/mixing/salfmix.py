"""SalfMix (Choi et al., Sensors 2021, https://doi.org/10.3390/s21248444), Algorithm 1.

Per image: average-pool the gradient saliency map into n x n cells, find the most (R_m) and least
(R_l) salient cells, draw an ``o x o`` patch P_m containing R_m and P_l containing R_l
(``o = floor(W * r)``, uniform among the positions inside the image), and copy P_m over P_l.
The label is unchanged (lam = 1).

No official code was released. Choices where the paper is silent, all documented here:

- A patch smaller than a cell (``o < W / n``) lies inside the cell, uniformly.
- When n does not divide the side, pooling with kernel = stride = floor(H / n) yields
  ``H // floor(H / n)`` cells per side (the remainder forms extra cells); n x n otherwise.
- P_m is read from the original image, so overlapping P_m and P_l are well defined.
- Ties in argmax/argmin go to the first cell in row-major order.

Ablations of section 6: :class:`SalfMixRandom` draws P_m and P_l uniformly over the image (no
saliency), :class:`SalfMixNoPool` uses pixel-level argmax/argmin (1 x 1 cells).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from pretrain.mixing.base import Mixer, MixResult, check_batch, check_saliency, rand, unmixed
from pretrain.mixing.geometry import paste_patches, patch_containing, pooled_cells


def check_r(r: float) -> float:
    """Return the patch ratio ``r`` as float; raises ValueError unless ``0 < r <= 1``."""
    if isinstance(r, bool) or not 0.0 < float(r) <= 1.0:
        raise ValueError(f"r: expected a patch ratio in (0, 1], got {r}")
    return float(r)


def patch_side(r: float, h: int, w: int) -> int:
    """``o = floor(W * r)``; raises ValueError unless ``0 < r <= 1`` and ``1 <= o <= min(H, W)``."""
    o = int(w * check_r(r))
    if o < 1 or o > h:
        raise ValueError(f"r: patch side floor(W * r) = floor({w} * {r}) = {o} must lie in [1, H={h}]")
    return o


def check_n(n: int, side: Optional[int] = None) -> int:
    """Return the pooled grid size ``n``; raises ValueError unless it is an integer in
    [1, side] (``side`` = the smaller image side, when known)."""
    top = side if side is not None else float("inf")
    if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or not 1 <= n <= top:
        limit = f"in [1, {side}] (the image side)" if side is not None else ">= 1"
        raise ValueError(f"n: expected an integer grid size {limit}, got {n}")
    return int(n)


def salfmix_positions(
    saliency: Tensor, n: int, o: int, generator: Optional[torch.Generator], pool: bool = True
) -> Tuple[Tensor, Tensor]:
    """Top-left ``(y, x)`` [B, 2] of P_m and of P_l for saliency maps [B, H, W].

    ``pool=False`` is the "without average pooling" ablation (pixel-level argmax/argmin).
    """
    b, h, w = saliency.shape
    top_max, top_min, cell = pooled_cells(saliency, n if pool else min(h, w))
    if not pool:
        cell = (1, 1)
    u = rand(4 * b, generator, saliency.device).view(b, 2, 2)  # [B, (P_m, P_l), (y, x)]
    cells = torch.stack([top_max, top_min], dim=1)  # [B, 2, 2]
    starts = patch_containing(cells.view(-1, 2), cell, o, (h, w), u.view(-1, 2)).view(b, 2, 2)
    return starts[:, 0], starts[:, 1]


def salfmix(
    images: Tensor,
    saliency: Tensor,
    n: int,
    r: float,
    generator: Optional[torch.Generator] = None,
    pool: bool = True,
) -> Tensor:
    """Self-mixed copy of ``images`` [B, C, H, W] given ``saliency`` [B, H, W] (Algorithm 1)."""
    check_batch(images)
    check_saliency(saliency, images)
    _, _, h, w = images.shape
    n, o = check_n(n, min(h, w)), patch_side(r, h, w)
    p_m, p_l = salfmix_positions(saliency, n, o, generator, pool)
    return paste_patches(images, images, p_m, p_l, (o, o))


def random_salfmix(images: Tensor, r: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """SalfMix without saliency: P_m and P_l uniform over all positions inside the image."""
    check_batch(images)
    b, _, h, w = images.shape
    o = patch_side(r, h, w)
    u = rand(4 * b, generator, images.device).view(b, 4)
    limits = torch.tensor([h - o + 1, w - o + 1, h - o + 1, w - o + 1], device=images.device)
    starts = (u * limits).floor().long().minimum(limits - 1)
    return paste_patches(images, images, starts[:, :2], starts[:, 2:], (o, o))


class SalfMix(Mixer):
    """SalfMix as a mixer: single-image, lam = 1. ``n`` pooled grid, ``r`` patch ratio."""

    needs_saliency = True

    def __init__(self, n: int = 4, r: float = 0.3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n, self.r = check_n(n), check_r(r)

    def mix(self, images: Tensor, targets: Tensor, saliency: Optional[Tensor]) -> MixResult:
        return unmixed(salfmix(images, saliency, self.n, self.r, self.generator), targets)


class SalfMixNoPool(SalfMix):
    """Ablation "w/o average pooling": argmax/argmin over pixels instead of n x n cells."""

    def __init__(self, r: float = 0.3, **kwargs) -> None:
        super().__init__(n=1, r=r, **kwargs)

    def mix(self, images: Tensor, targets: Tensor, saliency: Optional[Tensor]) -> MixResult:
        return unmixed(salfmix(images, saliency, 1, self.r, self.generator, pool=False), targets)


class SalfMixRandom(Mixer):
    """Ablation "w/o saliency": P_m and P_l drawn uniformly (no saliency pass)."""

    def __init__(self, r: float = 0.3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.r = check_r(r)

    def mix(self, images: Tensor, targets: Tensor, saliency: Optional[Tensor]) -> MixResult:
        return unmixed(random_salfmix(images, self.r, self.generator), targets)
