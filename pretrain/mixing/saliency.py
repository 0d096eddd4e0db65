"""Gradient saliency (paper eq. 2-3): ``M = max_c |dCE(f(x), y) / dx|``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("max", "rms")


def input_gradient(model: torch.nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    """``dCE(f(x), y)/dx`` [B, C, H, W] with the model in eval mode; parameters untouched.

    Eval mode makes each sample's gradient independent of the rest of the batch (BatchNorm uses
    its running statistics and does not update them). The loss is summed, not averaged, so a
    sample's gradient is the same whatever the batch size. ``torch.autograd.grad`` with only the
    input as target computes no parameter gradients and leaves every ``.grad`` as it was. The
    model's train/eval mode is restored, even on error.
    """
    was_training = model.training
    model.eval()
    try:
        x = images.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            loss = F.cross_entropy(logits.float(), targets, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
    finally:
        model.train(was_training)
    return grad


def reduce_gradient(grad: Tensor, reduction: str = "max") -> Tensor:
    """Per-pixel saliency [B, H, W] from an input gradient [B, C, H, W].

    ``"max"`` is eq. (3) of the SalfMix paper, ``max_c |g_c|``; ``"rms"`` is PuzzleMix's
    ``sqrt(mean_c g_c^2)``.
    """
    if reduction == "max":
        return grad.abs().amax(dim=1)
    if reduction == "rms":
        return grad.float().pow(2).mean(dim=1).sqrt()
    raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")


def gradient_saliency(model: torch.nn.Module, images: Tensor, targets: Tensor, reduction: str = "max") -> Tensor:
    """Saliency map [B, H, W] of ``images`` [B, C, H, W] for labels ``targets`` [B] (eq. 2-3)."""
    if images.dim() != 4:
        raise ValueError(f"images: expected a 4-D tensor [B, C, H, W], got {tuple(images.shape)}")
    if targets.dim() != 1 or targets.shape[0] != images.shape[0]:
        raise ValueError(f"targets: expected shape ({images.shape[0]},) to match images, got {tuple(targets.shape)}")
    return reduce_gradient(input_gradient(model, images, targets), reduction)
