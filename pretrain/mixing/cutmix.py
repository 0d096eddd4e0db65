"""CutMix (Yun et al., ICCV 2019, https://arxiv.org/abs/1905.04899).

Faithful to the official code (clovaai/CutMix-PyTorch): ``lam ~ Beta(beta, beta)`` (beta = 1),
partner = a random permutation; box side ``int(H * sqrt(1 - lam))`` (likewise W), centre uniform
over all pixels, edges ``centre -+ side // 2`` clipped to the image; the partner's box is pasted
into the image and lam is recomputed from the clipped box: ``lam = 1 - area / (H * W)``.
Mixing is applied with probability ``prob`` per batch (official: 0.5 on CIFAR, 1.0 on ImageNet).
The official code draws one lam and one box per batch (the default here); ``per_sample=True``
draws both per pair.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pretrain.mixing.base import Draws, MixResult, PairMixer, check_positive, register, uniform
from pretrain.mixing.base import beta as sample_beta
from pretrain.mixing.geometry import box_mask, cut_size, paste_boxes, random_centered_boxes


def cutmix_boxes(lam: Tensor, h: int, w: int, u: Tensor) -> Tensor:
    """CutMix boxes [B, 4] for mixing ratios ``lam`` [B] and centre draws ``u`` [B, 2] in [0, 1)."""
    cut_h, cut_w = cut_size(lam, h, w)
    return random_centered_boxes(cut_h, cut_w, h, w, u)


@register("cutmix")
class CutMix(PairMixer):
    """CutMix with ``lam ~ Beta(beta, beta)``, area-corrected lam."""

    composite = "paste"
    config_args = ("beta", "prob", "per_sample")

    def __init__(self, beta: float = 1.0, per_sample: bool = False, prob: float = 1.0, **kwargs) -> None:
        super().__init__(prob=prob, **kwargs)
        self.beta = check_positive("beta", beta)
        self.per_sample = bool(per_sample)

    def pair_draws(self, shape: tuple[int, ...]) -> Draws:
        k = shape[0] if self.per_sample else 1
        lam = torch.as_tensor(sample_beta(self.beta, k, self.generator))
        return {"lam": lam, "u": uniform(2 * k, self.generator).view(k, 2)}

    def apply_pair(self, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, s2: Tensor | None, draws: Draws) -> MixResult:
        b, _, h, w = x1.shape
        boxes = cutmix_boxes(draws["lam"], h, w, draws["u"]).expand(b, 4)
        mixed, lam = paste_boxes(x1, x2, boxes)
        return MixResult(mixed, y1, y2, lam, ~box_mask(boxes, h, w)[:, 0])
