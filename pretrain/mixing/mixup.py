"""Mixup (Zhang et al., ICLR 2018, https://arxiv.org/abs/1710.09412).

Faithful to the official code (facebookresearch/mixup-cifar10): ``lam ~ Beta(alpha, alpha)``
(alpha = 1 by default), partner = a random permutation of the batch,
``x = lam * x1 + (1 - lam) * x2``, loss ``lam * CE(y1) + (1 - lam) * CE(y2)``. The official code
draws one lam per batch (the default here); ``per_sample=True`` draws one per pair.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pretrain.mixing.base import Draws, MixResult, PairMixer, beta, check_positive, register


def mixup(x1: Tensor, x2: Tensor, lam: Tensor) -> Tensor:
    """``lam * x1 + (1 - lam) * x2`` with ``lam`` [B] broadcast over [B, C, H, W]."""
    lam = lam.to(x1.dtype).view(-1, 1, 1, 1)
    return lam * x1 + (1.0 - lam) * x2


@register("mixup")
class Mixup(PairMixer):
    """Mixup with ``lam ~ Beta(alpha, alpha)``, applied with probability ``prob`` per batch."""

    composite = "blend"
    config_args = ("alpha", "prob", "per_sample")

    def __init__(self, alpha: float = 1.0, per_sample: bool = False, prob: float = 1.0, **kwargs) -> None:
        super().__init__(prob=prob, **kwargs)
        self.alpha = check_positive("alpha", alpha)
        self.per_sample = bool(per_sample)

    def pair_draws(self, shape: tuple[int, ...]) -> Draws:
        k = shape[0] if self.per_sample else 1
        return {"lam": torch.as_tensor(beta(self.alpha, k, self.generator), dtype=torch.float32)}

    def apply_pair(self, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, s2: Tensor | None, draws: Draws) -> MixResult:
        lam = draws["lam"].expand(x1.shape[0])
        return MixResult(mixup(x1, x2, lam), y1, y2, lam)
