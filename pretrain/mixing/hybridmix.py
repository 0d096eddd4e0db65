"""HybridMix (Choi et al., Sensors 2021, https://doi.org/10.3390/s21248444), Algorithm 2.

For each sample d a partner z is drawn uniformly from the batch (with replacement, line 8 of
Algorithm 2); SalfMix is applied to both images independently (lines 10-11); then a two-image
method mixes the pair (line 12): v1 = Mixup, v2 = SaliencyMix, v3 = CutMix, with their own
parameters and defaults. If the two-image method skips the batch (its ``prob``), the result is
the self-mixed batch with lam = 1 (eq. 1 with the identity as the second step).

One saliency pass per batch, not two per pair. Algorithm 2 computes SalfMix(x_z) with a saliency
pass of its own; ``gradient_saliency`` runs the model in eval mode and sums the per-sample
losses, so sample z's map depends only on (x_z, y_z) and equals the map of that separate pass.
The partner's map is therefore ``saliency[z]``: the same maps as the paper's two passes, for the
cost of one. The two SalfMix calls still draw their patch positions independently.
"""
from __future__ import annotations

from typing import Optional, Type

from torch import Tensor

from pretrain.mixing.base import Mixer, MixResult, PairMixer, randint, randperm, unmixed
from pretrain.mixing.cutmix import CutMix
from pretrain.mixing.mixup import Mixup
from pretrain.mixing.saliencymix import SaliencyMix
from pretrain.mixing.salfmix import check_n, check_r, salfmix

PARTNERS = ("uniform", "permutation")


class HybridMix(Mixer):
    """SalfMix on both images of each pair, then ``pair_class`` mixes them.

    ``partner="uniform"`` follows Algorithm 2 (z uniform per sample, with replacement);
    ``"permutation"`` pairs samples by a random permutation as the two-image methods' own code
    does. Other keyword arguments go to the two-image method (e.g. ``beta``, ``prob``).
    """

    needs_saliency = True
    pair_class: Type[PairMixer] = CutMix

    def __init__(self, n: int = 4, r: float = 0.3, partner: str = "uniform", generator=None, seed=None, **pair_kwargs) -> None:
        super().__init__(generator=generator, seed=seed)
        self.n, self.r = check_n(n), check_r(r)
        if partner not in PARTNERS:
            raise ValueError(f"partner: expected one of {PARTNERS}, got {partner!r}")
        self.partner = partner
        self.pair = self.pair_class(generator=self.generator, **pair_kwargs)

    def mix(self, images: Tensor, targets: Tensor, saliency: Optional[Tensor]) -> MixResult:
        b = images.shape[0]
        x1 = salfmix(images, saliency, self.n, self.r, self.generator)  # [B, C, H, W]
        if self.pair.skips_batch():
            return unmixed(x1, targets)
        if self.partner == "uniform":
            z = randint(b, b, self.generator, images.device)
        else:
            z = randperm(b, self.generator, images.device)
        x2 = salfmix(images[z], saliency[z], self.n, self.r, self.generator)  # SalfMix(x_z), own draw
        return self.pair.mix_pair(x1, targets, x2, targets[z], saliency[z])


class HybridMixV1(HybridMix):
    """HybridMix v1: SalfMix + Mixup."""

    pair_class = Mixup


class HybridMixV2(HybridMix):
    """HybridMix v2: SalfMix + SaliencyMix."""

    pair_class = SaliencyMix


class HybridMixV3(HybridMix):
    """HybridMix v3: SalfMix + CutMix."""

    pair_class = CutMix
