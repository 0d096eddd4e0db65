"""The trainer's parts from the pretraining config: ``build_*(cfg)`` and the few helpers and
checks they need are the only functions that read it; everything they build takes plain
arguments (a mixer its hyperparameters, a model its architecture name)."""

from __future__ import annotations

import re
from typing import Any

import torch
from fvcore.common.config import CfgNode

from pretrain.engine.saliency_cache import DEFAULT_GRID, SaliencyCache
from pretrain.mixing import MIXERS, Mixer, make_mixer
from pretrain.models import build_arch


def config_value(cfg: CfgNode, key: str) -> Any:
    """The value of dotted ``key`` (e.g. ``"MIX.CUTMIX.BETA"``) in ``cfg``; lists become tuples."""
    value: Any = cfg
    for part in key.split("."):
        value = value[part]
    return tuple(value) if isinstance(value, list) else value


def mixer_keys(method: str) -> dict[str, str]:
    """Constructor argument -> the dotted config key it is read from, for ``method``: its own
    ``MIX.<METHOD>.<ARG>`` node and the shared keys its class declares."""
    cls = MIXERS[method]
    own = {arg: f"MIX.{method.upper()}.{arg.upper()}" for arg in cls.config_args}
    return {**own, **cls.config_keys}


def mixer_params(cfg: CfgNode) -> dict[str, Any]:
    """The keyword arguments of ``cfg.MIX.METHOD``, read from the keys :func:`mixer_keys` names."""
    return {arg: config_value(cfg, key) for arg, key in mixer_keys(cfg.MIX.METHOD).items()}


def build_mixer(cfg: CfgNode, generator: torch.Generator) -> Mixer:
    """The mixer of ``cfg.MIX``, drawing from ``generator``."""
    return make_mixer(cfg.MIX.METHOD, generator=generator, **mixer_params(cfg))


def build_saliency_cache(
    cfg: CfgNode, num_samples: int, src_hw: tuple[int, int], device: torch.device
) -> SaliencyCache | None:
    """The saliency cache of ``MIX.SALIENCY cached`` (None when fresh or the method takes no saliency).

    Its grid lies on the source images: 16 x 16 cells (at most one per pixel), or every source
    pixel for a method that reads saliency pixel by pixel.
    """
    if cfg.MIX.SALIENCY != "cached" or not needs_saliency(cfg):
        return None
    cls = MIXERS[cfg.MIX.METHOD]
    h, w = src_hw
    grid = (h, w) if cls.pixel_saliency else (min(DEFAULT_GRID, h), min(DEFAULT_GRID, w))
    return SaliencyCache(num_samples, grid, cls.saliency_reduction, device)


def build_model(cfg: CfgNode, num_classes: int, device: torch.device) -> torch.nn.Module:
    """The classifier of ``cfg.MODEL`` on ``device`` (channels_last if configured)."""
    model = build_arch(cfg.MODEL.ARCH, num_classes).to(device)
    if cfg.MODEL.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with the paper's momentum and weight decay."""
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.SOLVER.BASE_LR,
        momentum=cfg.SOLVER.MOMENTUM,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        nesterov=cfg.SOLVER.NESTEROV,
    )


def build_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of SOLVER.LR_SCHEDULE, stepped once per epoch: step decay by
    GAMMA after each epoch in SOLVER.STEPS, or a cosine from BASE_LR to 0 over MAX_EPOCHS."""
    if cfg.SOLVER.LR_SCHEDULE == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.SOLVER.MAX_EPOCHS)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.SOLVER.STEPS), gamma=cfg.SOLVER.GAMMA)


def needs_saliency(cfg: CfgNode) -> bool:
    """Whether the configured method uses saliency."""
    return MIXERS[cfg.MIX.METHOD].needs_saliency


def _by_config_key(message: str, keys: dict[str, str]) -> str:
    """``"r: expected ..."`` -> ``"MIX.R: expected ..."``: the mixers name their arguments, users set keys."""
    found = re.match(r"(\w+): ", message)
    if found and found.group(1) in keys:
        return keys[found.group(1)] + message[len(found.group(1)) :]
    return message


def check_mix_config(cfg: CfgNode, image_size: int) -> None:
    """Construct the configured mixer once and check its geometry for ``image_size`` x ``image_size``
    inputs (MIX.N within the side, MIX.R giving a patch of at least one pixel), before any training.

    Raises ValueError naming the config key (``MIX.R: ...``), not the mixer's argument; the
    checks are the mixer's own (:meth:`pretrain.mixing.base.Mixer.check_input`).
    """
    keys = mixer_keys(cfg.MIX.METHOD)
    try:
        make_mixer(cfg.MIX.METHOD, generator=torch.Generator(), **mixer_params(cfg)).check_input(image_size, image_size)
    except ValueError as err:
        raise ValueError(f"{_by_config_key(str(err), keys)} (input side {image_size})") from None
