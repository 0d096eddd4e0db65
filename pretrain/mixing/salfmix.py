"""SalfMix (Choi et al., Sensors 2021, https://doi.org/10.3390/s21248444), Algorithm 1.

Per image: average-pool the gradient saliency map into n x n cells, find the most (R_m) and least
(R_l) salient cells, draw an ``o x o`` patch P_m containing R_m and P_l containing R_l
(``o = floor(W * r)``, uniform among the positions inside the image), and copy P_m over P_l.
The label is unchanged (lam = 1).

No official code was released. Choices where the paper is silent, all documented here:

- A patch smaller than a cell (``o < W / n``) lies inside the cell, uniformly.
- When n does not divide the side, pooling with kernel = stride = k = floor(H / n) leaves
  ``H mod k`` remainder rows (and columns): they form one more, smaller cell per side, averaged
  over its own pixels (``ceil(H / k)`` cells per side), so a peak there is found; n x n otherwise.
- P_m is read from the original image, so overlapping P_m and P_l are well defined.
- Ties in argmax/argmin go to the first cell in row-major order.

Ablations of section 6: :class:`SalfMixRandom` draws P_m and P_l uniformly over the image (no
saliency), :class:`SalfMixNoPool` uses pixel-level argmax/argmin (1 x 1 cells, on any image shape).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pretrain.mixing.base import Draws, Mixer, MixResult, check_batch, check_saliency, register, uniform, unmixed
from pretrain.mixing.geometry import box_mask, cell_kernel, extreme_cells, paste_patches, patch_containing, square_boxes


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


def check_n(n: int, side: int | None = None) -> int:
    """Return the pooled grid size ``n``; raises ValueError unless it is an integer in
    [1, side] (``side`` = the smaller image side, when known)."""
    top = side if side is not None else float("inf")
    if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or not 1 <= n <= top:
        limit = f"in [1, {side}] (the image side)" if side is not None else ">= 1"
        raise ValueError(f"n: expected an integer grid size {limit}, got {n}")
    return int(n)


def position_draws(b: int, generator: torch.Generator | None) -> Tensor:
    """The host draws of :func:`salfmix_positions` for a batch of ``b``: uniform [B, (P_m, P_l), (y, x)]."""
    return uniform(4 * b, generator).view(b, 2, 2)


def salfmix_positions(saliency: Tensor, n: int, o: int, u: Tensor, pool: bool = True) -> tuple[Tensor, Tensor]:
    """Top-left ``(y, x)`` [B, 2] of P_m and of P_l for saliency maps [B, H, W], placed by the
    uniform draws ``u`` [B, 2, 2] (:func:`position_draws`) among the positions that contain the cell.

    ``pool=False`` is the "without average pooling" ablation (pixel-level argmax/argmin).
    """
    b, h, w = saliency.shape
    top_max, size_max, top_min, size_min = extreme_cells(saliency, cell_kernel(h, w, n) if pool else (1, 1))
    u = u.to(saliency.device)
    cells = torch.stack([top_max, top_min], dim=1)  # [B, 2, 2]
    sizes = torch.stack([size_max, size_min], dim=1)  # [B, 2, 2]
    starts = patch_containing(cells.view(-1, 2), sizes.view(-1, 2), o, (h, w), u.view(-1, 2)).view(b, 2, 2)
    return starts[:, 0], starts[:, 1]


def salfmix(
    images: Tensor,
    saliency: Tensor,
    n: int,
    r: float,
    generator: torch.Generator | None = None,
    pool: bool = True,
) -> Tensor:
    """Self-mixed copy of ``images`` [B, C, H, W] given ``saliency`` [B, H, W] (Algorithm 1)."""
    check_batch(images)
    check_saliency(saliency, images)
    b, _, h, w = images.shape
    return self_mix(images, saliency, check_n(n, min(h, w)), patch_side(r, h, w), position_draws(b, generator), pool)[0]


def self_mix(images: Tensor, saliency: Tensor, n: int, o: int, u: Tensor, pool: bool = True) -> tuple[Tensor, Tensor]:
    """:func:`salfmix` on inputs already checked, with the patch side ``o`` and the draws ``u``
    (:func:`position_draws`) given.

    Returns the self-mixed images and the own-pixel masks [B, H, W] (False on P_l)."""
    p_m, p_l = salfmix_positions(saliency, n, o, u, pool)
    h, w = images.shape[-2:]
    return paste_patches(images, images, p_m, p_l, (o, o)), ~box_mask(square_boxes(p_l, o), h, w)[:, 0]


def random_salfmix(images: Tensor, r: float, generator: torch.Generator | None = None) -> Tensor:
    """SalfMix without saliency: P_m and P_l uniform over all positions inside the image."""
    check_batch(images)
    return random_self_mix(images, r, uniform(4 * images.shape[0], generator).view(-1, 4))[0]


def random_self_mix(images: Tensor, r: float, u: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`random_salfmix` with its uniform draws ``u`` [B, 4] given, and the own-pixel masks
    [B, H, W] (False on P_l)."""
    b, _, h, w = images.shape
    o = patch_side(r, h, w)
    u = u.to(images.device)
    # (u * limit).floor() per column, with the limits as Python numbers: no host-to-device copy.
    ys, xs = (h - o + 1), (w - o + 1)
    starts = torch.stack(
        [
            (u[:, 0] * ys).floor().clamp(max=ys - 1),
            (u[:, 1] * xs).floor().clamp(max=xs - 1),
            (u[:, 2] * ys).floor().clamp(max=ys - 1),
            (u[:, 3] * xs).floor().clamp(max=xs - 1),
        ],
        dim=1,
    ).long()
    own = ~box_mask(square_boxes(starts[:, 2:], o), h, w)[:, 0]
    return paste_patches(images, images, starts[:, :2], starts[:, 2:], (o, o)), own


@register("salfmix")
class SalfMix(Mixer):
    """SalfMix as a mixer: single-image, lam = 1. ``n`` pooled grid, ``r`` patch ratio."""

    composite = "single_image"
    needs_saliency = True
    start_epoch = 2  # Algorithm 2: the saliency of an untrained net is noise
    config_keys = {"n": "MIX.N", "r": "MIX.R"}

    def __init__(self, n: int = 4, r: float = 0.3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n, self.r = check_n(n), check_r(r)

    def check_input(self, h: int, w: int) -> None:
        check_n(self.n, min(h, w))
        patch_side(self.r, h, w)

    def host_draws(self, shape: tuple[int, ...]) -> Draws:
        return {"u": position_draws(shape[0], self.generator)}

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        _, _, h, w = images.shape
        mixed, own = self_mix(images, saliency, check_n(self.n, min(h, w)), patch_side(self.r, h, w), draws["u"])
        return unmixed(mixed, targets, own)


@register("salfmix_nopool")
class SalfMixNoPool(SalfMix):
    """Ablation "w/o average pooling": argmax/argmin over pixels instead of n x n cells."""

    pixel_saliency = True
    config_keys = {"r": "MIX.R"}

    def __init__(self, r: float = 0.3, **kwargs) -> None:
        super().__init__(n=1, r=r, **kwargs)

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        _, _, h, w = images.shape
        mixed, own = self_mix(images, saliency, 1, patch_side(self.r, h, w), draws["u"], pool=False)
        return unmixed(mixed, targets, own)


@register("salfmix_random")
class SalfMixRandom(Mixer):
    """Ablation "w/o saliency": P_m and P_l drawn uniformly (no saliency pass)."""

    composite = "single_image"
    start_epoch = 2  # an ablation of SalfMix: the same schedule
    config_keys = {"r": "MIX.R"}

    def __init__(self, r: float = 0.3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.r = check_r(r)

    def check_input(self, h: int, w: int) -> None:
        patch_side(self.r, h, w)

    def host_draws(self, shape: tuple[int, ...]) -> Draws:
        return {"u": uniform(4 * shape[0], self.generator).view(-1, 4)}

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        mixed, own = random_self_mix(images, self.r, draws["u"])
        return unmixed(mixed, targets, own)
