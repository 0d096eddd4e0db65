"""ResizeMix (Qin et al. 2020, https://arxiv.org/abs/2012.11101).

Faithful to the authors' code (JayQine/ResizeMix, ``run_apis/trainer.py`` and
``tools/utils.py:getbox_new``):

- one side scale ``tau ~ U(scale[0], scale[1])`` per batch (the paper's alpha = 0.1 and
  beta = 0.8, bounds of a uniform draw, not Beta parameters);
- the partner batch (a random permutation) is shrunk with ``F.interpolate(x, scale_factor=tau)``:
  mode ``"nearest"`` (the default of that call), output side ``floor(H * tau)``, and, as torch
  does since 1.6 when a scale factor is given, source pixel ``floor(k / tau)`` for output pixel
  ``k``; the pasted pixels are exact partner pixels;
- each sample's paste centre ``(cy, cx)`` is drawn uniformly over the whole image, the box starts
  at ``cy - h_small // 2`` and is then shifted back inside the image
  (``y1 = min(max(cy - h_small // 2, 0), H - h_small)``, likewise x), so large patches pile up
  at the borders (at tau = 0.8 on 32 px the top row is 0 with probability 13/32);
- ``lam = 1 - h_small * w_small / (H * W)`` from the shrunk size.

The authors' loop applies ResizeMix to every batch on which CutMix is not drawn; with CutMix off
(their ResizeMix configs) that is every batch: ``prob = 1``, the default.

Deviations: random draws come from the mixer's generator (not ``random`` / numpy global state);
the mixed batch is a new tensor (the authors paste into ``input`` in place, sample by sample,
reading the shrunk copy made before the loop, which gives the same result); the shrink and paste
are one batched gather with ``F.interpolate``'s index rule (the same pixels, with shapes that do
not depend on tau: no host read-back, compilable). Option ``per_sample=True`` (not in the
authors' code) draws one tau per pair.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pretrain.mixing.base import Draws, MixResult, PairMixer, register, uniform
from pretrain.mixing.geometry import box_mask, channels_last, like


def shrunk_size(side: int, tau: Tensor) -> Tensor:
    """``floor(side * tau)`` (float64, as ``F.interpolate`` computes its output size), at least 1."""
    return (side * tau.double()).floor().long().clamp(min=1)


def nearest_index(out_size: Tensor, tau: Tensor, in_size: int, length: int) -> Tensor:
    """Source index [B, length] of output pixel k of a ``scale_factor=tau`` nearest resize.

    torch's nearest kernel uses ``min(floor(k * float32(1 / tau)), in - 1)`` in float32; entries
    at ``k >= out_size`` are clamped to the last valid one (callers mask them out).
    """
    scale = (1.0 / tau.double()).float().view(-1, 1)
    k = torch.arange(length, device=tau.device, dtype=torch.float32).view(1, -1)
    k = torch.minimum(k, (out_size - 1).float().view(-1, 1))
    return (k * scale).floor().long().clamp(max=in_size - 1)


def centre_then_shift(centre: Tensor, size: Tensor, length: int) -> Tensor:
    """``getbox_new``'s start: ``min(max(centre - size // 2, 0), length - size)``, elementwise."""
    return torch.minimum((centre - size // 2).clamp(min=0), length - size)


def resize_paste(x1: Tensor, x2: Tensor, tau: Tensor, top: Tensor, left: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Paste each ``x2[i]`` shrunk by ``tau[i]`` (nearest) into ``x1[i]`` at ``(top[i], left[i])``.

    Returns the mixed images, the shrunk heights and widths [B]. One gather of the whole batch.
    """
    b, c, h, w = x1.shape
    ph, pw = shrunk_size(h, tau), shrunk_size(w, tau)
    rows = nearest_index(ph, tau, h, h)  # [B, H]: source row of each patch row
    cols = nearest_index(pw, tau, w, w)  # [B, W]
    # Destination pixel (y, x) reads source pixel (rows[y - top], cols[x - left]) inside the box.
    dy = (torch.arange(h, device=x1.device).view(1, h) - top.view(-1, 1)).clamp(0, h - 1)
    dx = (torch.arange(w, device=x1.device).view(1, w) - left.view(-1, 1)).clamp(0, w - 1)
    src_y, src_x = rows.gather(1, dy), cols.gather(1, dx)  # [B, H], [B, W]
    pixel = src_y.unsqueeze(2) * w + src_x.unsqueeze(1)  # [B, H, W] source pixel of each destination pixel
    if channels_last(x2):  # gather on the [B, H*W, C] view: the patches stay channels_last
        flat = pixel.view(b, h * w, 1).expand(b, h * w, c)
        patches = x2.permute(0, 2, 3, 1).reshape(b, h * w, c).gather(1, flat).view(b, h, w, c).permute(0, 3, 1, 2)
    else:
        flat = pixel.view(b, 1, h * w).expand(b, c, h * w)
        patches = x2.reshape(b, c, h * w).gather(2, flat).view(b, c, h, w)
    boxes = torch.stack([top, left, top + ph, left + pw], dim=1)
    return torch.where(like(box_mask(boxes, h, w), x1), patches, x1), ph, pw


@register("resizemix")
class ResizeMix(PairMixer):
    """ResizeMix with side scale ``tau ~ U(scale[0], scale[1])``."""

    composite = "paste"
    config_args = ("scale", "prob", "per_sample")

    def __init__(
        self, scale: tuple[float, float] = (0.1, 0.8), per_sample: bool = False, prob: float = 1.0, **kwargs
    ) -> None:
        super().__init__(prob=prob, **kwargs)
        if len(scale) != 2 or not 0.0 < float(scale[0]) <= float(scale[1]) <= 1.0:
            raise ValueError(f"scale: expected (min, max) with 0 < min <= max <= 1, got {tuple(scale)}")
        self.scale_min, self.scale_max = float(scale[0]), float(scale[1])
        self.per_sample = bool(per_sample)

    def pair_draws(self, shape: tuple[int, ...]) -> Draws:
        k = shape[0] if self.per_sample else 1
        span = self.scale_max - self.scale_min
        tau = self.scale_min + span * torch.rand(k, generator=self.generator, dtype=torch.float64)
        return {"tau": tau, "u": uniform(2 * shape[0], self.generator).view(-1, 2)}

    def apply_pair(self, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, s2: Tensor | None, draws: Draws) -> MixResult:
        b, _, h, w = x1.shape
        tau, u = draws["tau"].expand(b), draws["u"]
        centre_y = (u[:, 0] * h).floor().long().clamp(max=h - 1)  # np.random.randint(0, H, B)
        centre_x = (u[:, 1] * w).floor().long().clamp(max=w - 1)
        ph, pw = shrunk_size(h, tau), shrunk_size(w, tau)
        top, left = centre_then_shift(centre_y, ph, h), centre_then_shift(centre_x, pw, w)
        # One batched gather for both modes (the per-batch tau expanded): the same pixels as the
        # authors' F.interpolate(x2, scale_factor=tau) pasted sample by sample, with static shapes.
        mixed, ph, pw = resize_paste(x1, x2, tau, top, left)
        lam = 1.0 - (ph * pw).double() / (h * w)
        own = ~box_mask(torch.stack([top, left, top + ph, left + pw], dim=1), h, w)[:, 0]
        return MixResult(mixed, y1, y2, lam.float(), own)
