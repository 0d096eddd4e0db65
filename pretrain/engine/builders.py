"""``build_*(cfg)``: the only functions that read the pretraining config."""
from __future__ import annotations

from typing import Any, Dict

import torch
from fvcore.common.config import CfgNode

from pretrain.mixing import MIXERS, Mixer
from pretrain.mixing import build_mixer as make_mixer
from pretrain.models import build_arch

# Which MIX keys each method takes, under its own parameter name.
_BETA = {"mixup": "alpha", "puzzlemix": "alpha", "hybridmix_v1": "alpha",
         "cutmix": "beta", "saliencymix": "beta", "hybridmix_v2": "beta", "hybridmix_v3": "beta"}
_SALF = {"cutout_saliency", "salfmix", "hybridmix_v1", "hybridmix_v2", "hybridmix_v3"}
_PAIR = {"mixup", "cutmix", "saliencymix", "resizemix", "puzzlemix", "hybridmix_v1", "hybridmix_v2", "hybridmix_v3"}
_PER_SAMPLE = {"mixup", "cutmix", "resizemix", "hybridmix_v1", "hybridmix_v3"}
_SMIX_MODE = {"saliencymix", "hybridmix_v2"}


def mixer_params(cfg: CfgNode) -> Dict[str, Any]:
    """The keyword arguments of ``cfg.MIX.METHOD`` taken from the ``MIX`` keys."""
    m, mix = cfg.MIX.METHOD, cfg.MIX
    params: Dict[str, Any] = {}
    if m in _SALF:
        params.update(n=mix.N, r=mix.R)
    if m in ("salfmix_random", "salfmix_nopool"):
        params["r"] = mix.R
    if m.startswith("hybridmix"):
        params["partner"] = mix.PARTNER
    if m in _BETA:
        params[_BETA[m]] = mix.BETA
    if m in _PAIR:
        params["prob"] = mix.PROB
    if m in _PER_SAMPLE:
        params["per_sample"] = mix.PER_SAMPLE
    if m in _SMIX_MODE:
        params["mode"] = mix.SALIENCYMIX_MODE
    if m == "cutout":
        params["size"] = mix.CUTOUT_SIZE
    if m == "resizemix":
        params["scale_min"], params["scale_max"] = mix.RESIZEMIX_SCALE
    if m == "puzzlemix":  # its smoothness term works on un-normalised pixels
        params["mean"], params["std"] = tuple(cfg.AUG.MEAN), tuple(cfg.AUG.STD)
    return params


def build_mixer(cfg: CfgNode, generator: torch.Generator) -> Mixer:
    """The mixer of ``cfg.MIX``, drawing from ``generator``."""
    return make_mixer(cfg.MIX.METHOD, generator=generator, **mixer_params(cfg))


def cache_grid(cfg: CfgNode, image_size: int) -> int:
    """Side of the pooled maps the saliency cache keeps for this method.

    SalfMix-family methods only look at the n x n pooled map; the pixel-level ablation needs the
    full map; PuzzleMix pools to 2..16 blocks (and its transport grid), all of which a 16 x 16
    map determines exactly.
    """
    method = cfg.MIX.METHOD
    grid = image_size if method == "salfmix_nopool" else 16 if method == "puzzlemix" else cfg.MIX.N
    if image_size % grid:
        raise ValueError(f"MIX.SALIENCY cached: the image side {image_size} must be a multiple of the cache grid {grid}")
    return grid


def build_model(cfg: CfgNode, num_classes: int, device: torch.device) -> torch.nn.Module:
    """The classifier of ``cfg.MODEL`` on ``device`` (channels_last if configured)."""
    model = build_arch(cfg.MODEL.ARCH, num_classes).to(device)
    if cfg.MODEL.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with the paper's momentum and weight decay."""
    return torch.optim.SGD(
        model.parameters(), lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY, nesterov=cfg.SOLVER.NESTEROV,
    )


def build_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.MultiStepLR:
    """Step decay by GAMMA after each epoch in SOLVER.STEPS (stepped once per epoch)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.SOLVER.STEPS), gamma=cfg.SOLVER.GAMMA)


def needs_saliency(cfg: CfgNode) -> bool:
    """Whether the configured method uses saliency."""
    return MIXERS[cfg.MIX.METHOD].needs_saliency
