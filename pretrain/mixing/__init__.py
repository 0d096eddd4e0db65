"""Mixing augmentations: SalfMix, HybridMix and the methods the paper compares against.

Needs only torch and numpy (plus gco for PuzzleMix's graph cut, imported when PuzzleMix first
mixes, and OpenCV's contrib module for SaliencyMix's ``backend="opencv"`` reference only), so it
can be lifted into any training loop::

    from pretrain.mixing import make_mixer, mix_loss
    mixer = make_mixer("hybridmix_v3", n=8, r=0.3)
    result = mixer(images, targets, model=model)
    loss = mix_loss(model(result.images), result)

Each method lives in one module of this package and registers itself with
``@register("name")``; every module here is imported below, so adding a method is adding a file.
The class declares what a training loop needs (``config_keys``, ``start_epoch``,
``needs_saliency``, ...: see :class:`pretrain.mixing.base.Mixer`).
"""

from __future__ import annotations

import importlib
import pkgutil

from pretrain.mixing.base import REGISTRY, Mixer, MixResult, mix_loss, register
from pretrain.mixing.salfmix import salfmix
from pretrain.mixing.saliency import gradient_saliency

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

# The paper's table order (baseline, single-image methods and ablations, two-image methods,
# HybridMix); a method not listed here follows, in registration order.
PAPER_ORDER = (
    "none",
    "cutout",
    "cutout_saliency",
    "salfmix",
    "salfmix_random",
    "salfmix_nopool",
    "mixup",
    "cutmix",
    "saliencymix",
    "resizemix",
    "puzzlemix",
    "hybridmix_v1",
    "hybridmix_v2",
    "hybridmix_v3",
)

#: Every method by its ``MIX.METHOD`` name, in the paper's order.
MIXERS: dict[str, type[Mixer]] = {
    **{name: REGISTRY[name] for name in PAPER_ORDER if name in REGISTRY},
    **{name: cls for name, cls in REGISTRY.items() if name not in PAPER_ORDER},
}


def make_mixer(name: str, **params) -> Mixer:
    """The mixer registered as ``name``, constructed with ``params``.

    Raises ValueError for an unknown name (listing the valid ones) or an unknown parameter.
    """
    if name not in MIXERS:
        raise ValueError(f"unknown mixing method {name!r}; valid names: {', '.join(MIXERS)}")
    try:
        return MIXERS[name](**params)
    except TypeError as err:  # an unexpected keyword argument
        raise ValueError(f"mixing method {name!r}: {err}") from None


def takes_patch_ratio(name: str) -> bool:
    """Whether method ``name`` reads the patch ratio ``r`` (``MIX.R``)."""
    return MIXERS[name].config_keys.get("r") == "MIX.R"


__all__ = [
    "MIXERS",
    "Mixer",
    "MixResult",
    "gradient_saliency",
    "make_mixer",
    "mix_loss",
    "register",
    "salfmix",
    "takes_patch_ratio",
]
