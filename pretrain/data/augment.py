"""Batched augmentation on the images' device: random resized crop, flip, colour jitter, normalise.

Input is a uint8 batch ``[B, H, W, 3]`` (as :class:`pretrain.data.loader.BatchLoader` yields it,
moved to any device); output is float32 ``[B, 3, S, S]``, normalised. Every random draw comes
from a CPU ``torch.Generator`` (O(B) numbers, drawn in a fixed order, then moved to the device),
so a seeded run makes the same draws on CPU and CUDA.

Crop, resize and flip are one separable resampling (:mod:`pretrain.data.crop_resize`): exactly
torchvision's antialiased ``resized_crop``, the flip free, the brightness factor folded into the
row filter.

Colour jitter is brightness, then contrast, then saturation (a fixed order; torchvision's
``ColorJitter`` draws a random order per image), each exactly torchvision's ``adjust_*`` on float
images. No hue jitter.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pretrain.data.crop_resize import crop_resize_apply, crop_resize_taps
from pretrain.mixing.base import host_to_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SizeArg = int | tuple[int, int]
_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _size(size: SizeArg) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"output_size={size!r}: expected a positive int or (height, width)")
    return int(h), int(w)


def _check_images(images: Tensor, who: str) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{images.dtype} {list(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{who}: expected a uint8 tensor [B, H, W, 3], got {got}")


class _Normaliser:
    """Scale and shift taking [0, 1] values to ``(x - mean) / std``, shaped [1, 3, 1, 1], made once
    per device and kept there (a step never copies constants from the host)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.host = (1.0 / s, -m / s)
        self.on: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __call__(self, device: torch.device) -> tuple[Tensor, Tensor]:
        device = torch.device(device)
        if device not in self.on:
            self.on[device] = tuple(t.to(device) for t in self.host)
        return self.on[device]


def _check_stats(mean: Sequence[float], std: Sequence[float], who: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"{who}: mean and std must be 3 values each, std > 0; got mean={mean}, std={std}")
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def grayscale(x: Tensor) -> Tensor:
    """Luma ``[B, 1, H, W]`` of float RGB ``[B, 3, H, W]`` with torchvision's weights."""
    r, g, b = x.unbind(1)
    return torch.mul(r, _GREY[0]).add_(g, alpha=_GREY[1]).add_(b, alpha=_GREY[2]).unsqueeze(1)


@dataclass
class AugmentParams:
    """One batch's random draws, CPU tensors [B]: crop box (top, left, height, width) in input
    pixels, horizontal flip, and the brightness / contrast / saturation factors (1 = unchanged)."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor


def sample_crops(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """RandomResizedCrop boxes ``(top, left, h, w)``, int64 [B] each, torchvision's sampling.

    Per sample, 10 candidates at once: area fraction ~ U(scale), log aspect ~ U(log ratio),
    ``w = round(sqrt(A * r))``, ``h = round(sqrt(A / r))``; the first that fits is taken, with
    top/left uniform over the valid positions; if none fits, torchvision's central fallback crop.
    """
    area = float(height * width)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    frac = torch.empty(batch, 10, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator)
    aspect = torch.exp(torch.empty(batch, 10, dtype=torch.float64).uniform_(log_r[0], log_r[1], generator=generator))
    pos = torch.rand(batch, 2, dtype=torch.float64, generator=generator)
    # torch.round rounds halves to even, as Python's round() in torchvision does.
    w = torch.round(torch.sqrt(area * frac * aspect)).long()
    h = torch.round(torch.sqrt(area * frac / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.long().argmax(1, keepdim=True)  # argmax returns the first maximal index
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    found = ok.any(1)
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    top = torch.floor(pos[:, 0] * (height - h + 1).double()).long().clamp_max(height - h)
    left = torch.floor(pos[:, 1] * (width - w + 1).double()).long().clamp_max(width - w)
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return top, left, h, w


def _jitter_factors(batch: int, v: float, generator: torch.Generator) -> Tensor:
    if v < 0:
        raise ValueError(f"colour jitter strength {v}: expected >= 0")
    return torch.empty(batch, dtype=torch.float32).uniform_(max(0.0, 1.0 - v), 1.0 + v, generator=generator)


@functools.cache
def _grey_weights(device: torch.device, dtype: torch.dtype) -> Tensor:
    """torchvision's luma weights as a [3] tensor, made once per device and dtype."""
    return torch.tensor(_GREY, dtype=dtype).to(device)


def adjust_contrast_(x: Tensor, factor: Tensor) -> Tensor:
    """torchvision's adjust_contrast per sample, in place: blend with the mean grey level, clamp."""
    grey = _grey_weights(x.device, x.dtype)
    mean = (x.mean(dim=(2, 3)) * grey).sum(1).view(-1, 1, 1, 1)  # mean of the luma = luma of the means
    c = factor.view(-1, 1, 1, 1)
    return x.mul_(c).add_((1.0 - c) * mean).clamp_(0.0, 1.0)


def adjust_saturation_(x: Tensor, factor: Tensor) -> Tensor:
    """torchvision's adjust_saturation per sample, in place: blend with the luma image, clamp."""
    s = factor.view(-1, 1, 1, 1)
    grey = grayscale(x).mul_(1.0 - s)  # taken before x is overwritten
    return x.mul_(s).add_(grey).clamp_(0.0, 1.0)


class TrainAugment:
    """Random resized crop + horizontal flip + colour jitter + normalisation, batched on the device.

    ``output_size`` (int or ``(h, w)``) is the training input size (a 64 px image is upsampled by
    the crop resize if it is larger); the attribute keeps an int for square sizes, ``size_hw`` is
    always ``(h, w)``. ``brightness``/``contrast``/``saturation`` ``v`` draw per-sample factors
    uniform in ``[max(0, 1 - v), 1 + v]``; 0 disables that adjustment. ``mean``/``std`` are in
    [0, 1] units.
    """

    def __init__(
        self,
        output_size: SizeArg,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if not (0 < scale[0] <= scale[1] <= 1.0) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(
                f"TrainAugment scale={scale}, ratio={ratio}: "
                "expected 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]"
            )
        for v in (brightness, contrast, saturation):
            if v < 0:
                raise ValueError(f"TrainAugment colour jitter strength {v}: expected >= 0")
        self.size_hw = _size(output_size)
        # The side as an int for square outputs (what a model config speaks), else (h, w).
        self.output_size = self.size_hw[0] if self.size_hw[0] == self.size_hw[1] else self.size_hw
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.flip = flip
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)
        self.mean, self.std = _check_stats(mean, std, "TrainAugment")
        self.normaliser = _Normaliser(self.mean, self.std)

    def sample_params(
        self, batch: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> AugmentParams:
        """Draw one batch's parameters on the CPU, in a fixed order: crops, flips, jitter factors."""
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"TrainAugment: expected a CPU torch.Generator, got one on {generator.device}")
        top, left, h, w = sample_crops(batch, height, width, self.scale, self.ratio, generator)
        flip = torch.rand(batch, generator=generator) < 0.5 if self.flip else torch.zeros(batch, dtype=torch.bool)
        ones = torch.ones(batch)
        strengths = (self.brightness, self.contrast, self.saturation)
        factors = [_jitter_factors(batch, v, generator) if v > 0 else ones for v in strengths]
        return AugmentParams(top, left, h, w, flip, *factors)

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Augment uint8 ``[B, H, W, 3]`` with given parameters: float32 ``[B, 3, S, S]``, normalised.

        Everything the host computes from ``params`` (the resize taps, the jitter factors) reaches
        the images' device in one non-blocking copy; the rest runs there.
        """
        _check_images(images, "TrainAugment")
        dev = images.device
        # Brightness is a per-sample gain: folded into the resize matrix, then clamped as torchvision does.
        host = {
            "taps": crop_resize_taps(
                params, tuple(images.shape[1:3]), self.size_hw, gain=params.brightness if self.brightness else None
            )
        }
        if self.contrast:
            host["contrast"] = params.contrast
        if self.saturation:
            host["saturation"] = params.saturation
        moved = host_to_device(host, dev)
        x = crop_resize_apply(images, moved["taps"], self.size_hw)
        if self.brightness:
            x.clamp_(0.0, 1.0)
        if self.contrast:
            adjust_contrast_(x, moved["contrast"])
        if self.saturation:
            adjust_saturation_(x, moved["saturation"])
        scale, shift = self.normaliser(dev)
        out = torch.empty((x.shape[0], 3, *self.size_hw), device=dev)
        # mul with out= also makes the result contiguous (out-of-place addcmul is ~5x slower on CPU).
        return torch.mul(x, scale, out=out).add_(shift)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a uint8 batch ``[B, H, W, 3]`` on its device; draws come from ``generator`` (CPU)."""
        _check_images(images, "TrainAugment")
        b, h, w, _ = images.shape
        return self.apply(images, self.sample_params(b, h, w, generator))


class EvalTransform:
    """Resize (bilinear, antialiased) to ``output_size`` when the images differ, then normalise."""

    def __init__(
        self, output_size: SizeArg, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        self.size_hw = _size(output_size)
        self.output_size = self.size_hw[0] if self.size_hw[0] == self.size_hw[1] else self.size_hw
        self.mean, self.std = _check_stats(mean, std, "EvalTransform")
        self.normaliser = _Normaliser(self.mean, self.std)

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 ``[B, H, W, 3]`` on any device -> float32 ``[B, 3, S, S]``, normalised."""
        _check_images(images, "EvalTransform")
        x = images.permute(0, 3, 1, 2).float().mul_(1.0 / 255.0)
        if tuple(x.shape[-2:]) != self.size_hw:
            x = F.interpolate(x, size=self.size_hw, mode="bilinear", align_corners=False, antialias=True)
        scale, shift = self.normaliser(images.device)
        return x.mul(scale).add_(shift).contiguous()


def channel_stats(
    images: np.ndarray, max_images: int = 20000, seed: int = 0
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of uint8 ``[N, H, W, 3]`` images (a random subset
    of at most ``max_images``), e.g. to normalise with a packed dataset's own statistics."""
    n = len(images)
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_images), replace=False))
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for start in range(0, len(pick), 1024):
        chunk = np.asarray(images[pick[start : start + 1024]], dtype=np.float64).reshape(-1, 3) / 255.0
        total += chunk.sum(0)
        total_sq += (chunk**2).sum(0)
        count += len(chunk)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
