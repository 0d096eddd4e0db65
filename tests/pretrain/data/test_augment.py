"""Batched augmentation against torchvision, per sample.

Tolerances: the crop/resize, flip and jitter reproduce torchvision's float computations, so
outputs agree to float32 rounding: 1e-5 in [0, 1] units (about 1/400 of a grey level)."""

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import RandomResizedCrop

from pretrain.data.augment import EvalTransform, TrainAugment, channel_stats, sample_crops
from pretrain.data.crop_resize import crop_resize

TOL = 1e-5
PLAIN = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # output = augmented image in [0, 1]


def _images(b=12, h=64, w=48, seed=0):
    return torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _reference(image, p, i, size, jitter=(True, True, True)):
    """torchvision v2 functional ops on one float image with sample i's parameters."""
    x = image.permute(2, 0, 1).float() / 255.0
    x = TF.resized_crop(x, int(p.top[i]), int(p.left[i]), int(p.height[i]), int(p.width[i]), list(size), antialias=True)
    if p.flip[i]:
        x = TF.horizontal_flip(x)
    if jitter[0]:
        x = TF.adjust_brightness(x, float(p.brightness[i]))
    if jitter[1]:
        x = TF.adjust_contrast(x, float(p.contrast[i]))
    if jitter[2]:
        x = TF.adjust_saturation(x, float(p.saturation[i]))
    return x


@pytest.mark.parametrize(
    "hw, size", [((64, 48), 64), ((64, 48), 96), ((64, 48), 40), ((64, 48), (30, 70)), ((64, 64), 64), ((32, 32), 80)]
)
@pytest.mark.parametrize("method", ["taps", "matmul"])
def test_crop_matches_resized_crop_per_sample(hw, size, method):
    images = _images(h=hw[0], w=hw[1])
    aug = TrainAugment(size, flip=True, **PLAIN)
    p = aug.sample_params(len(images), *hw, torch.Generator().manual_seed(1))
    out = crop_resize(images, p, aug.size_hw, method=method)
    assert out.shape == (12, 3, *aug.size_hw) and out.dtype == torch.float32
    for i in range(len(images)):
        ref = _reference(images[i], p, i, aug.size_hw, jitter=(False, False, False))
        assert (out[i] - ref).abs().max() < TOL, i
    assert (aug.apply(images, p) - out).abs().max() < TOL  # apply picks a method itself


def test_flip_mirrors_exactly_the_flagged_samples():
    images = _images(b=16, h=32, w=32)
    aug = TrainAugment(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), **PLAIN)  # whole image, no resize
    p = aug.sample_params(16, 32, 32, torch.Generator().manual_seed(2))
    assert 0 < int(p.flip.sum()) < 16
    out = aug.apply(images, p)
    plain = images.permute(0, 3, 1, 2).float() / 255.0
    expected = torch.where(p.flip.view(-1, 1, 1, 1), plain.flip(-1), plain)
    assert (out - expected).abs().max() < TOL
    assert not TrainAugment(32, flip=False).sample_params(16, 32, 32).flip.any()


@pytest.mark.parametrize("which", ["brightness", "contrast", "saturation", "all"])
def test_jitter_matches_torchvision_adjust(which):
    strengths = {k: (0.4 if which in (k, "all") else 0.0) for k in ("brightness", "contrast", "saturation")}
    images = _images()
    aug = TrainAugment(56, **strengths, **PLAIN)
    p = aug.sample_params(len(images), 64, 48, torch.Generator().manual_seed(3))
    for name, v in strengths.items():
        f = getattr(p, name)
        assert torch.all((f >= 1 - v) & (f <= 1 + v)) and (v == 0) == bool(torch.all(f == 1))
    out = aug.apply(images, p)
    on = tuple(v > 0 for v in strengths.values())
    for i in range(len(images)):
        assert (out[i] - _reference(images[i], p, i, (56, 56), jitter=on)).abs().max() < TOL, i


def test_jitter_factor_range_clipped_at_zero():
    p = TrainAugment(8, brightness=1.5).sample_params(2000, 8, 8, torch.Generator().manual_seed(0))
    assert p.brightness.min() >= 0.0 and p.brightness.max() <= 2.5 and p.brightness.min() < 0.05


def _torchvision_get_params(frac, aspect, pos, height, width, scale, ratio):
    """RandomResizedCrop.get_params's loop, fed our draws instead of its own."""
    area = height * width
    for k in range(10):
        w = int(round(math.sqrt(area * frac[k] * aspect[k])))
        h = int(round(math.sqrt(area * frac[k] / aspect[k])))
        if 0 < w <= width and 0 < h <= height:
            return int(pos[0] * (height - h + 1)), int(pos[1] * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize(
    "hw, scale, ratio",
    [
        ((64, 64), (0.08, 1.0), (3 / 4, 4 / 3)),
        ((48, 64), (0.08, 1.0), (0.2, 5.0)),  # some of the 10 attempts fail
        ((64, 64), (0.9, 1.0), (3.0, 4.0)),  # all fail: central fallback, ratio clipped
        ((30, 90), (0.95, 1.0), (0.5, 0.6)),  # all fail: fallback on a wide image
    ],
)
def test_crop_sampling_is_torchvisions_with_vectorised_attempts(hw, scale, ratio):
    h, w = hw
    n = 500
    top, left, ch, cw = sample_crops(n, h, w, scale, ratio, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)  # replay the documented draw order: area, log-ratio, position
    frac = torch.empty(n, 10, dtype=torch.float64).uniform_(scale[0], scale[1], generator=g)
    aspect = torch.exp(
        torch.empty(n, 10, dtype=torch.float64).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=g)
    )
    pos = torch.rand(n, 2, dtype=torch.float64, generator=g)
    for i in range(n):
        ref = _torchvision_get_params(frac[i].tolist(), aspect[i].tolist(), pos[i].tolist(), h, w, scale, ratio)
        assert (int(top[i]), int(left[i]), int(ch[i]), int(cw[i])) == ref
    assert torch.all((top >= 0) & (left >= 0) & (top + ch <= h) & (left + cw <= w) & (ch > 0) & (cw > 0))


def test_crop_distribution_matches_torchvision():
    n = 3000
    top, left, h, w = sample_crops(n, 64, 64, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(5))
    torch.manual_seed(5)
    ref = torch.tensor(
        [RandomResizedCrop.get_params(torch.empty(3, 64, 64), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
    )
    ours = torch.stack([top, left, h, w], 1).double()
    for col in range(4):
        assert abs(ours[:, col].mean() - ref[:, col].double().mean()) < 1.5, col
    assert abs((h * w).double().mean() / 4096 - (ref[:, 2] * ref[:, 3]).double().mean() / 4096) < 0.03


def test_seeded_runs_are_identical_and_the_generator_advances():
    images = _images()
    aug = TrainAugment(64, brightness=0.4, contrast=0.4, saturation=0.4)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    a, b = aug(images, g1), aug(images, g2)
    assert torch.equal(a, b)
    assert not torch.equal(aug(images, g1), a)  # next batch, next draws
    assert not torch.equal(aug(images, torch.Generator().manual_seed(10)), a)
    p = aug.sample_params(12, 64, 48, torch.Generator().manual_seed(9))
    assert torch.equal(aug.apply(images, p), a)


def test_normalisation():
    images = _images()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    p = TrainAugment(32).sample_params(12, 64, 48, torch.Generator().manual_seed(6))
    plain = TrainAugment(32, **PLAIN).apply(images, p)
    out = TrainAugment(32, mean=mean, std=std).apply(images, p)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    assert out.is_contiguous() and (out - (plain - m) / s).abs().max() < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    images = _images()
    aug = TrainAugment(80, brightness=0.4, contrast=0.4, saturation=0.4)
    cpu = aug(images, torch.Generator().manual_seed(7))
    gpu = aug(images.cuda(), torch.Generator().manual_seed(7))
    assert gpu.device.type == "cuda" and (gpu.cpu() - cpu).abs().max() < 1e-3  # TF32 matmuls may be on


@pytest.mark.parametrize("size", [64, 80, 40])
def test_eval_transform_matches_torchvision_resize(size):
    images = _images(b=4)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.3, 0.25)
    out = EvalTransform(size, mean, std)(images)
    assert out.shape == (4, 3, size, size) and out.is_contiguous()
    for i in range(4):
        x = images[i].permute(2, 0, 1).float() / 255.0
        if (64, 48) != (size, size):
            x = TF.resize(x, [size, size], antialias=True)
        ref = TF.normalize(x, list(mean), list(std))
        assert (out[i] - ref).abs().max() < 1e-4


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"TrainAugment: expected a uint8 tensor \[B, H, W, 3\], got torch.float32"):
        TrainAugment(32)(torch.zeros(2, 8, 8, 3))
    with pytest.raises(ValueError, match="EvalTransform: expected a uint8 tensor"):
        EvalTransform(32)(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    assert TrainAugment(32).output_size == 32 and TrainAugment((32, 40)).output_size == (32, 40)
    assert EvalTransform((24, 24)).output_size == 24 and EvalTransform(24).size_hw == (24, 24)
    with pytest.raises(ValueError, match="output_size=0"):
        TrainAugment(0)
    with pytest.raises(ValueError, match=r"scale=\(0.5, 0.2\)"):
        TrainAugment(32, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="colour jitter strength -0.1"):
        TrainAugment(32, contrast=-0.1)
    with pytest.raises(ValueError, match="mean and std must be 3 values"):
        EvalTransform(32, mean=(0.5,), std=(0.2,))
    with pytest.raises(ValueError, match="method 'nearest'"):
        crop_resize(_images(b=1), TrainAugment(8).sample_params(1, 64, 48), (8, 8), method="nearest")


def test_channel_stats():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    mean, std = channel_stats(images)
    flat = images.reshape(-1, 3) / 255.0
    assert np.allclose(mean, flat.mean(0)) and np.allclose(std, flat.std(0))
