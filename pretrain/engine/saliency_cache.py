"""The ``cached`` saliency source (our addition, not in the paper).

``fresh`` saliency costs one extra forward/backward per step (``gradient_saliency``). The cache
removes it: the training step already back-propagates to its input, so the input gradient of
that backward, reduced over channels (max |g| or RMS, as the mixer expects) and average-pooled
to a ``grid x grid`` map, is stored per dataset sample. On the sample's next visit (the next
epoch) the mixer gets that map, upsampled by repetition to the image size, which average-pools
back to the stored cells (exactly for cells of 1 or 2 pixels a side; otherwise up to the float32
rounding of the pooling sum, under 1e-6 relative, which never reverses the order of two cells).
Only the pooled maps are kept: N x grid x grid floats.

How it differs from ``fresh``: the map is one epoch old, comes from the model in train mode
(BatchNorm with batch statistics) and from the loss of the *mixed* image of which the sample
was the first image. SalfMix only uses the argmax/argmin cells of the pooled map, which this
approximates; compare both with the ``MIX.SALIENCY`` key.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from pretrain.mixing.saliency import reduce_gradient


def pool_saliency(saliency: Tensor, grid: int) -> Tensor:
    """[B, H, W] -> [B, H // k, W // k] average-pooled with kernel = stride = k = H // grid."""
    k = saliency.shape[-2] // grid, saliency.shape[-1] // grid
    return F.avg_pool2d(saliency.unsqueeze(1).float(), k, stride=k)[:, 0]


def unpool_saliency(pooled: Tensor, h: int, w: int) -> Tensor:
    """Nearest upsampling of pooled maps [B, g, g] to [B, H, W]; pooling it again at the same
    kernel gives the same cells, up to the float32 rounding of the pooling sum (see the module
    docstring). Pixels beyond the last full cell (when g does not divide the side) are 0: pooling
    with kernel = stride ignores them."""
    b, gh, gw = pooled.shape
    kh, kw = h // gh, w // gw
    up = pooled.repeat_interleave(kh, dim=1).repeat_interleave(kw, dim=2)
    return F.pad(up, (0, w - up.shape[2], 0, h - up.shape[1]))


class SaliencyCache:
    """Pooled saliency maps of every training sample, indexed by dataset index."""

    def __init__(self, num_samples: int, grid: int, reduction: str, device: torch.device) -> None:
        self.grid, self.reduction = grid, reduction
        self.maps = torch.zeros(num_samples, grid, grid, device=device)
        self.filled = torch.zeros(num_samples, dtype=torch.bool, device=device)

    def lookup(self, indices: Tensor, h: int, w: int) -> Optional[Tensor]:
        """Saliency [B, H, W] for ``indices``, or None if any of them was never stored."""
        if not bool(self.filled[indices].all()):
            return None
        return unpool_saliency(self.maps[indices], h, w)

    def pooled_from_gradient(self, grad: Tensor) -> Tensor:
        """What the cache stores for an input gradient [B, C, H, W]: [B, grid, grid]."""
        return pool_saliency(reduce_gradient(grad.float(), self.reduction), self.grid)

    def store(self, indices: Tensor, pooled: Tensor) -> None:
        """Store pooled maps [B, grid, grid] for ``indices`` [B]."""
        self.maps[indices] = pooled.to(self.maps.dtype)
        self.filled[indices] = True

    def state_dict(self) -> Dict[str, Any]:
        """The cache's content, for checkpoints."""
        return {"maps": self.maps.cpu(), "filled": self.filled.cpu(), "grid": self.grid, "reduction": self.reduction}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state["maps"].shape != self.maps.shape:
            raise ValueError(f"saliency cache: checkpoint shape {tuple(state['maps'].shape)} != {tuple(self.maps.shape)}")
        self.maps.copy_(state["maps"])
        self.filled.copy_(state["filled"])
