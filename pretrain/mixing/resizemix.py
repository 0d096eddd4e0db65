"""ResizeMix (Qin et al. 2020, https://arxiv.org/abs/2012.11101).

Faithful to the official semantics: a side scale ``tau ~ U(0.1, 0.8)`` (the paper's alpha and
beta, not Beta parameters), the whole partner batch resized to ``(int(H * tau), int(W * tau))``
(bilinear with antialiasing, as torchvision's ``Resize`` on tensors) and pasted at a position
drawn per sample uniformly among those fully inside the image, so the patch is never clipped.
One tau per batch by default; ``per_sample=True`` draws one per pair (then the resize is a
batched bilinear ``grid_sample``, which has no antialiasing).

Deviation: the official code weights the partner's label by ``tau ** 2``; here lam is the true
pixel ratio ``1 - int(H * tau) * int(W * tau) / (H * W)``, which differs from ``1 - tau ** 2`` only
by the rounding of the patch side (under 2 / H relative) and is what the image really holds.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from pretrain.mixing.base import MixResult, PairMixer, check_pair, rand
from pretrain.mixing.geometry import paste_patches


def resize_into_boxes(src: Tensor, top: Tensor, left: Tensor, ph: Tensor, pw: Tensor, h: int, w: int) -> Tuple[Tensor, Tensor]:
    """Per-sample bilinear resize of ``src`` [B, C, Hs, Ws] into boxes of size (ph, pw) at (top, left).

    Returns the resampled images [B, C, H, W] (valid inside each box) and the box mask
    [B, 1, H, W]. Sampling positions follow ``align_corners=False``, as ``F.interpolate``.
    """
    dev = src.device
    rows = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
    top, left = top.view(-1, 1, 1).float(), left.view(-1, 1, 1).float()
    ph_f, pw_f = ph.view(-1, 1, 1).float(), pw.view(-1, 1, 1).float()
    # Normalised source coordinates in [-1, 1] of each destination pixel centre.
    gy = (rows - top + 0.5) / ph_f * 2.0 - 1.0
    gx = (cols - left + 0.5) / pw_f * 2.0 - 1.0
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)  # [B, H, W, 2]
    out = F.grid_sample(src, grid.to(src.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    inside = (rows >= top) & (rows < top + ph_f) & (cols >= left) & (cols < left + pw_f)
    return out, inside.unsqueeze(1)


class ResizeMix(PairMixer):
    """ResizeMix with side scale ``tau ~ U(scale_min, scale_max)``."""

    def __init__(
        self, scale_min: float = 0.1, scale_max: float = 0.8, per_sample: bool = False, prob: float = 1.0, **kwargs
    ) -> None:
        super().__init__(prob=prob, **kwargs)
        if not 0.0 < float(scale_min) <= float(scale_max) <= 1.0:
            raise ValueError(
                f"scale_min, scale_max: expected 0 < scale_min <= scale_max <= 1, got {scale_min}, {scale_max}"
            )
        self.scale_min, self.scale_max = float(scale_min), float(scale_max)
        self.per_sample = bool(per_sample)

    def mix_pair(
        self, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, s2: Optional[Tensor] = None
    ) -> MixResult:
        check_pair(x1, y1, x2, y2)
        b, _, h, w = x1.shape
        k = b if self.per_sample else 1
        tau = self.scale_min + (self.scale_max - self.scale_min) * torch.rand(k, generator=self.generator, dtype=torch.float64)
        ph = (h * tau).floor().long().clamp(min=1).expand(b).to(x1.device)
        pw = (w * tau).floor().long().clamp(min=1).expand(b).to(x1.device)
        u = rand(2 * b, self.generator, x1.device).view(b, 2)
        top = (u[:, 0] * (h - ph + 1)).floor().long().minimum(h - ph)
        left = (u[:, 1] * (w - pw + 1)).floor().long().minimum(w - pw)
        if self.per_sample:
            patches, inside = resize_into_boxes(x2, top, left, ph, pw, h, w)
            mixed = torch.where(inside, patches, x1)
        else:
            size = (int(ph[0]), int(pw[0]))
            small = F.interpolate(x2, size=size, mode="bilinear", align_corners=False, antialias=True)
            mixed = paste_patches(x1, small, torch.zeros_like(torch.stack([top, left], 1)), torch.stack([top, left], 1), size)
        lam = 1.0 - (ph * pw).float() / (h * w)
        return MixResult(mixed, y1, y2, lam)
