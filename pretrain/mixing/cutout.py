"""Cutout (DeVries & Taylor 2017, https://arxiv.org/abs/1708.04552) and its saliency ablation.

Faithful to the official code (uoguelph-mlrg/Cutout): one square hole per image, centre uniform
over all pixels, edges ``centre -+ length // 2`` clipped at the borders, applied after
normalisation so the hole is 0. ``length = int(size * H)`` with ``size = 0.5`` (the paper's
"mask size 0.5 of the input image"; 16 px at 32 px as in the official CIFAR-10 setting).
The official transform runs per image in the data loader; here every image of the batch gets its
own hole in one vectorised call. The label is unchanged (lam = 1).

:class:`CutoutSaliency` is the paper's "Cutout w/ Sal." ablation (section 6.2): it drops the
least salient patch P_l exactly as SalfMix chooses it (side ``floor(W * r)`` around the argmin
cell of the n x n pooled saliency), so it differs from SalfMix only in filling P_l with zeros
instead of P_m (the comparison of section 6.3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pretrain.mixing.base import Draws, Mixer, MixResult, register, uniform, unmixed
from pretrain.mixing.geometry import box_mask, like, random_centered_boxes, square_boxes
from pretrain.mixing.salfmix import SalfMix, check_n, patch_side, salfmix_positions


def cutout_holes(b: int, h: int, w: int, length: int, u: Tensor) -> Tensor:
    """Boolean masks [B, 1, H, W] of one ``length``-side hole per image, True inside.

    ``u`` [B, 2] are uniform draws in [0, 1) for each hole's centre row and column.
    """
    side = torch.full((b,), int(length), device=u.device)
    return box_mask(random_centered_boxes(side, side, h, w, u), h, w)


def cutout(images: Tensor, length: int, u: Tensor) -> Tensor:
    """A copy of ``images`` [B, C, H, W] with one ``length``-side hole per image set to 0."""
    b, _, h, w = images.shape
    return torch.where(like(cutout_holes(b, h, w, length, u), images), 0.0, images)


@register("cutout")
class Cutout(Mixer):
    """Cutout with a hole of side ``size * H`` (``size`` in (0, 1]), one per image."""

    composite = "single_image"
    config_args = ("size",)

    def __init__(self, size: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < float(size) <= 1.0:
            raise ValueError(f"size: expected the hole side as a fraction of the image in (0, 1], got {size}")
        self.size = float(size)

    def host_draws(self, shape: tuple[int, ...]) -> Draws:
        return {"u": uniform(2 * shape[0], self.generator).view(-1, 2)}

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        b, _, h, w = images.shape
        holes = cutout_holes(b, h, w, int(self.size * h), draws["u"])
        return unmixed(torch.where(like(holes, images), 0.0, images), targets, ~holes[:, 0])


@register("cutout_saliency")
class CutoutSaliency(SalfMix):
    """Cutout that drops the least salient patch P_l (paper section 6.2). An ablation of SalfMix:
    its grid, patch, draws and schedule (Algorithm 2); only what happens at P_l differs."""

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        _, _, h, w = images.shape
        n, o = check_n(self.n, min(h, w)), patch_side(self.r, h, w)
        _, p_l = salfmix_positions(saliency, n, o, draws["u"])
        holes = box_mask(square_boxes(p_l, o), h, w)
        return unmixed(torch.where(like(holes, images), 0.0, images), targets, ~holes[:, 0])
