"""Mixing augmentations: SalfMix, HybridMix and the methods the paper compares against.

Needs only torch and numpy (plus OpenCV for SaliencyMix's official mode and gco for PuzzleMix's
graph cut), so it can be lifted into any training loop::

    from pretrain.mixing import build_mixer, mix_loss
    mixer = build_mixer("hybridmix_v3", n=8, r=0.3)
    result = mixer(images, targets, model=model)
    loss = mix_loss(model(result.images), result)
"""
from __future__ import annotations

from typing import Dict, Type

from pretrain.mixing.base import Mixer, MixResult, NoMix, mix_loss
from pretrain.mixing.cutmix import CutMix
from pretrain.mixing.cutout import Cutout, CutoutSaliency
from pretrain.mixing.hybridmix import HybridMixV1, HybridMixV2, HybridMixV3
from pretrain.mixing.mixup import Mixup
from pretrain.mixing.puzzlemix import PuzzleMix
from pretrain.mixing.resizemix import ResizeMix
from pretrain.mixing.saliency import gradient_saliency
from pretrain.mixing.saliencymix import SaliencyMix
from pretrain.mixing.salfmix import SalfMix, SalfMixNoPool, SalfMixRandom, salfmix

MIXERS: Dict[str, Type[Mixer]] = {
    "none": NoMix,
    "cutout": Cutout,
    "cutout_saliency": CutoutSaliency,
    "salfmix": SalfMix,
    "salfmix_random": SalfMixRandom,
    "salfmix_nopool": SalfMixNoPool,
    "mixup": Mixup,
    "cutmix": CutMix,
    "saliencymix": SaliencyMix,
    "resizemix": ResizeMix,
    "puzzlemix": PuzzleMix,
    "hybridmix_v1": HybridMixV1,
    "hybridmix_v2": HybridMixV2,
    "hybridmix_v3": HybridMixV3,
}


def build_mixer(name: str, **params) -> Mixer:
    """The mixer registered as ``name``, constructed with ``params``.

    Raises ValueError for an unknown name (listing the valid ones) or an unknown parameter.
    """
    if name not in MIXERS:
        raise ValueError(f"unknown mixing method {name!r}; valid names: {', '.join(MIXERS)}")
    try:
        return MIXERS[name](**params)
    except TypeError as err:  # an unexpected keyword argument
        raise ValueError(f"mixing method {name!r}: {err}") from None


__all__ = [
    "MIXERS",
    "Mixer",
    "MixResult",
    "build_mixer",
    "gradient_saliency",
    "mix_loss",
    "salfmix",
]
