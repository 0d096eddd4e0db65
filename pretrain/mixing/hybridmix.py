"""HybridMix (Choi et al., Sensors 2021, https://doi.org/10.3390/s21248444), Algorithm 2.

For each sample d a partner z is drawn uniformly from the batch (with replacement, line 8 of
Algorithm 2); SalfMix is applied to both images independently (lines 10-11); then a two-image
method T_t mixes the pair (line 12): v1 = Mixup, v2 = SaliencyMix, v3 = CutMix, with their own
parameters and defaults.

Per pair, as Algorithm 2 reads: T_t is called once per pair, so each pair draws its own lam and
box (``per_pair=True``, the default): v1 and v3 run their two-image method with
``per_sample=True``; v2 runs SaliencyMix in its ``"per_sample"`` mode, each box centred on its
own partner's saliency peak. ``per_pair=False`` draws one lam and box per batch, as the
two-image methods' official code does (v2 then uses ``mode``, "official" by default).
Algorithm 2 has no application probability; ``prob`` (default 1) is kept for experiments: if
the two-image step skips the batch, the result is the self-mixed batch with lam = 1.

One saliency pass per batch, not two per pair. Algorithm 2 computes SalfMix(x_z) with a saliency
pass of its own; ``gradient_saliency`` runs the model in eval mode and sums the per-sample
losses, so sample z's map depends only on (x_z, y_z) and equals the map of that separate pass.
The partner's map is therefore ``saliency[z]``: the same maps as the paper's two passes, for the
cost of one. The two SalfMix calls still draw their patch positions independently.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor

from pretrain.mixing.base import Draws, Mixer, MixResult, PairMixer, both_own, integers, permutation, register, unmixed
from pretrain.mixing.cutmix import CutMix
from pretrain.mixing.mixup import Mixup
from pretrain.mixing.salfmix import check_n, check_r, patch_side, position_draws, self_mix
from pretrain.mixing.saliencymix import SaliencyMix

PARTNERS = ("uniform", "permutation")


class HybridMix(Mixer):
    """SalfMix on both images of each pair, then ``pair_class`` mixes them.

    ``partner="uniform"`` follows Algorithm 2 (z uniform per sample, with replacement);
    ``"permutation"`` pairs samples by a random permutation as the two-image methods' own code
    does. ``per_pair``: one lam and box per pair (Algorithm 2) or per batch. Other keyword
    arguments go to the two-image method (e.g. ``beta``, ``prob``).
    """

    needs_saliency = True
    start_epoch = 2  # Algorithm 2 mixes from the second epoch on
    config_keys = {"n": "MIX.N", "r": "MIX.R"}
    config_args = ("partner", "per_pair", "beta", "prob")
    pair_class: type[PairMixer] = CutMix

    @classmethod
    def config_defaults(cls) -> dict[str, Any]:
        """Its own arguments' defaults, and the two-image method's for those passed on to it."""
        own = inspect.signature(HybridMix.__init__).parameters
        pair = cls.pair_class.config_defaults()
        return {arg: own[arg].default if arg in own else pair[arg] for arg in cls.config_args}

    def __init__(
        self,
        n: int = 4,
        r: float = 0.3,
        partner: str = "uniform",
        per_pair: bool = True,
        generator=None,
        seed=None,
        **pair_kwargs,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        self.n, self.r = check_n(n), check_r(r)
        if partner not in PARTNERS:
            raise ValueError(f"partner: expected one of {PARTNERS}, got {partner!r}")
        self.partner, self.per_pair = partner, bool(per_pair)
        self.pair = self.pair_class(generator=self.generator, **self.pair_options(self.per_pair, pair_kwargs))

    def check_input(self, h: int, w: int) -> None:
        check_n(self.n, min(h, w))
        patch_side(self.r, h, w)
        self.pair.check_input(h, w)

    @staticmethod
    def pair_options(per_pair: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The two-image method's keyword arguments: ``kwargs`` plus its per-pair switch."""
        if "per_sample" in kwargs:
            raise ValueError("per_sample: HybridMix sets it from per_pair (one lam and box per pair or per batch)")
        return {**kwargs, "per_sample": per_pair}

    def host_draws(self, shape: tuple[int, ...]) -> Draws:
        b = shape[0]
        draws: Draws = {"self": position_draws(b, self.generator)}  # SalfMix(x_d)
        if self.pair.skips_batch():
            return {**draws, "skip": True}
        partner = integers(b, b, self.generator) if self.partner == "uniform" else permutation(b, self.generator)
        return {
            **draws,
            "skip": False,
            "partner": partner,
            "partner_self": position_draws(b, self.generator),  # SalfMix(x_z): draws of its own
            "pair": self.pair.pair_draws(shape),
        }

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        _, _, h, w = images.shape
        n, o = check_n(self.n, min(h, w)), patch_side(self.r, h, w)
        x1, own = self_mix(images, saliency, n, o, draws["self"])  # [B, C, H, W], SalfMix(x_d)
        if draws["skip"]:
            return unmixed(x1, targets, own)
        z = draws["partner"]
        x2, _ = self_mix(images[z], saliency[z], n, o, draws["partner_self"])  # SalfMix(x_z)
        result = self.pair.apply_pair(x1, targets, x2, targets[z], saliency[z], draws["pair"])
        result.own = both_own(own, result.own)
        return result


@register("hybridmix_v1")
class HybridMixV1(HybridMix):
    """HybridMix v1: SalfMix + Mixup."""

    composite = "blend"
    config_args = ("partner", "per_pair", "alpha", "prob")
    pair_class = Mixup


@register("hybridmix_v2")
class HybridMixV2(HybridMix):
    """HybridMix v2: SalfMix + SaliencyMix (per pair: each box on its own partner's saliency)."""

    composite = "paste"
    pair_class = SaliencyMix

    @staticmethod
    def pair_options(per_pair: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        """SaliencyMix's ``"per_sample"`` mode per pair; ``mode`` (default "official") per batch."""
        if per_pair and kwargs.get("mode", "per_sample") != "per_sample":
            raise ValueError(
                f"mode: HybridMix v2 per pair uses SaliencyMix's 'per_sample' mode, got {kwargs['mode']!r}"
                " (set per_pair=False for a per-batch mode)"
            )
        return {**kwargs, "mode": "per_sample"} if per_pair else dict(kwargs)


@register("hybridmix_v3")
class HybridMixV3(HybridMix):
    """HybridMix v3: SalfMix + CutMix."""

    composite = "paste"
    pair_class = CutMix
