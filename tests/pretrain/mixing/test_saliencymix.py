"""SaliencyMix: the official per-batch procedure and the corrected per-sample mode."""

import sys

import numpy as np
import pytest
import torch

from pretrain.mixing.base import beta as sample_beta
from pretrain.mixing.saliencymix import MODES, SaliencyMix, gray_uint8

try:
    import cv2
except ImportError:
    cv2 = None
HAVE_SALIENCY = cv2 is not None and hasattr(cv2, "saliency")
# The comparisons with OpenCV itself need its contrib module; the port runs without it.
needs_cv2 = pytest.mark.skipif(not HAVE_SALIENCY, reason="needs opencv-contrib (cv2.saliency) as the reference")


def seeded(seed=0, **kwargs):
    return SaliencyMix(generator=torch.Generator().manual_seed(seed), **kwargs)


def blobby_batch(b=8, c=3, h=32, w=24, seed=0):
    """Normalised-looking images with one bright blob each (a non-trivial saliency peak)."""
    g = torch.Generator().manual_seed(seed)
    images = 0.3 * torch.randn(b, c, h, w, generator=g)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.rand(b, 2, generator=g) * torch.tensor([h, w])
    d2 = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2
    images += 2.0 * torch.exp(-d2 / 8.0).unsqueeze(1) * torch.rand(b, c, 1, 1, generator=g)
    return images, torch.randint(10, (b,), generator=g)


def box_by_hand(cy, cx, lam, h, w):
    """The official saliency_bbox arithmetic: CutMix side, centre -+ side // 2, clipped."""
    cut_h, cut_w = int(h * np.sqrt(1.0 - lam)), int(w * np.sqrt(1.0 - lam))
    y1, y2 = np.clip(cy - cut_h // 2, 0, h), np.clip(cy + cut_h // 2, 0, h)
    x1, x2 = np.clip(cx - cut_w // 2, 0, w), np.clip(cx + cut_w // 2, 0, w)
    return int(y1), int(x1), int(y2), int(x2)


def official_reference(images, targets, seed, beta=1.0):
    """The official training-loop code, with its draws taken from the mixer's generator order."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(images.shape[0], generator=g)
    lam = sample_beta(beta, 1, g)[0]
    h, w = images.shape[-2:]
    temp_img = images[index[0]].cpu().numpy().transpose(1, 2, 0)
    _, saliency_map = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(temp_img)
    saliency_map = (saliency_map * 255).astype("uint8")
    cy, cx = np.unravel_index(np.argmax(saliency_map, axis=None), saliency_map.shape)
    y1, x1, y2, x2 = box_by_hand(cy, cx, lam, h, w)
    out = images.clone()
    out[:, :, y1:y2, x1:x2] = images[index, :, y1:y2, x1:x2]
    return out, targets[index], 1 - (y2 - y1) * (x2 - x1) / (h * w), (cy, cx)


def per_sample_reference(x1, x2, lams):
    """A plain loop: 8-bit grey of each partner, cv2 saliency, argmax, box by hand."""
    detector = cv2.saliency.StaticSaliencyFineGrained_create()
    out, lam_out = x1.clone(), []
    h, w = x1.shape[-2:]
    for i in range(x1.shape[0]):
        img = x2[i].numpy().astype(np.float32)
        span = img.max() - img.min()
        u8 = np.round((img - img.min()) / span * np.float32(255)).astype(np.uint8)
        hwc = np.ascontiguousarray(u8.transpose(1, 2, 0))
        grey = hwc[..., 0] if hwc.shape[2] == 1 else cv2.cvtColor(hwc, cv2.COLOR_RGB2GRAY)
        saliency_map = detector.computeSaliency(grey)[1]
        cy, cx = np.unravel_index(np.argmax(saliency_map), saliency_map.shape)
        y1, xa, y2, xb = box_by_hand(cy, cx, lams[i], h, w)
        out[i, :, y1:y2, xa:xb] = x2[i, :, y1:y2, xa:xb]
        lam_out.append(1 - (y2 - y1) * (xb - xa) / (h * w))
    return out, torch.tensor(lam_out, dtype=torch.float32)


@needs_cv2
@pytest.mark.parametrize("seed", range(4))
def test_official_mode_matches_official_loop(seed):
    images, targets = blobby_batch(seed=seed)
    result = seeded(seed)(images, targets)
    out, targets_b, lam, _ = official_reference(images, targets, seed)
    assert torch.equal(result.images, out)
    assert torch.equal(result.targets_a, targets) and torch.equal(result.targets_b, targets_b)
    assert torch.allclose(result.lam, torch.full((8,), lam, dtype=torch.float32))


@needs_cv2
def test_official_box_is_centred_on_cv2_argmax_of_first_partner():
    x2, y2 = blobby_batch(b=6, h=40, w=36, seed=7)
    x1, y1 = torch.zeros_like(x2), y2.flip(0)
    x2 = x2 - x2.min() + 1.0  # every x2 pixel differs from x1's zeros
    result = seeded(3).mix_pair(x1, y1, x2, y2)
    temp_img = x2[0].numpy().transpose(1, 2, 0)
    saliency_map = (cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(temp_img)[1] * 255).astype("uint8")
    cy, cx = np.unravel_index(np.argmax(saliency_map), saliency_map.shape)
    lam0 = sample_beta(1.0, 1, torch.Generator().manual_seed(3))[0]
    y1_, x1_, y2_, x2_ = box_by_hand(cy, cx, lam0, 40, 36)
    inside = (result.images != 0).all(dim=1)  # [B, H, W]
    expected = torch.zeros(40, 36, dtype=torch.bool)
    expected[y1_:y2_, x1_:x2_] = True
    assert (inside == expected).all()  # the same box for the whole batch
    assert torch.allclose(result.lam, torch.full((6,), 1 - expected.float().mean().item()))


@needs_cv2
@pytest.mark.parametrize("channels,shape", [(3, (32, 32)), (3, (17, 23)), (1, (24, 20))])
def test_per_sample_matches_python_reference(channels, shape):
    x2, y2 = blobby_batch(b=10, c=channels, h=shape[0], w=shape[1], seed=11)
    x1, y1 = torch.randn(10, channels, *shape), y2.roll(1)
    result = seeded(5, mode="per_sample").mix_pair(x1, y1, x2, y2)
    lams = sample_beta(1.0, 10, torch.Generator().manual_seed(5))
    out, lam = per_sample_reference(x1, x2, lams)
    assert torch.equal(result.images, out)
    assert torch.equal(result.lam, lam)
    assert torch.equal(result.targets_a, y1) and torch.equal(result.targets_b, y2)


@pytest.mark.parametrize("mode", MODES)
def test_lam_is_true_pixel_ratio_and_outside_untouched(mode):
    g = torch.Generator().manual_seed(1)
    x1 = torch.zeros(16, 3, 32, 28)
    x2 = 1.0 + torch.rand(16, 3, 32, 28, generator=g)
    y1, y2 = torch.arange(16), torch.arange(16).flip(0)
    result = seeded(2, mode=mode).mix_pair(x1, y1, x2, y2)
    assert result.images.shape == x1.shape
    from_x2 = (result.images != 0).all(dim=1)
    assert ((result.images == 0).all(dim=1) | from_x2).all()  # each pixel wholly from x1 or x2
    assert torch.equal(result.images[from_x2.unsqueeze(1).expand_as(x2)], x2[from_x2.unsqueeze(1).expand_as(x2)])
    # The x2 pixels form one axis-aligned box per sample.
    rows, cols = from_x2.any(dim=2), from_x2.any(dim=1)
    assert torch.equal(from_x2, rows.unsqueeze(2) & cols.unsqueeze(1))
    assert torch.allclose(result.lam, 1.0 - from_x2.float().mean(dim=(1, 2)))
    assert ((result.lam >= 0) & (result.lam <= 1)).all()
    assert torch.equal(result.targets_a, y1) and torch.equal(result.targets_b, y2)
    if mode == "per_sample":
        assert result.lam.unique().numel() > 1
    else:
        assert result.lam.unique().numel() == 1


@pytest.mark.parametrize("mode", MODES)
def test_seeded_determinism_and_s2_ignored(mode):
    images, targets = blobby_batch(seed=4)
    a = seeded(0, mode=mode, prob=0.7)
    b = seeded(0, mode=mode, prob=0.7)
    for _ in range(3):
        ra, rb = a(images, targets), b(images, targets)
        assert torch.equal(ra.images, rb.images) and torch.equal(ra.lam, rb.lam)
        assert torch.equal(ra.targets_b, rb.targets_b)
    s2 = torch.rand(8, 32, 24)
    r1 = seeded(9, mode=mode).mix_pair(images, targets, images.flip(0), targets.flip(0))
    r2 = seeded(9, mode=mode).mix_pair(images, targets, images.flip(0), targets.flip(0), s2)
    assert torch.equal(r1.images, r2.images) and torch.equal(r1.lam, r2.lam)


def test_prob_zero_is_unmixed():
    images, targets = blobby_batch()
    result = seeded(0, prob=0.0)(images, targets)
    assert torch.equal(result.images, images) and torch.equal(result.lam, torch.ones(8))


@needs_cv2
def test_gray_uint8_matches_cv2_rgb2gray():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, 17, 23, generator=g)
    images[5] = 0.25  # a constant image scales to 0
    grey = gray_uint8(images)
    assert grey.dtype == torch.uint8 and grey.shape == (6, 17, 23)
    for i in range(5):
        x = images[i].numpy()
        u8 = np.round((x - x.min()) / (x.max() - x.min()) * np.float32(255)).astype(np.uint8)
        ref = cv2.cvtColor(np.ascontiguousarray(u8.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY)
        np.testing.assert_array_equal(grey[i].numpy(), ref)
    assert (grey[5] == 0).all()


def test_official_mode_without_opencv_contrib(monkeypatch):
    """The default backend is the port on the device: no OpenCV needed; the OpenCV reference
    backend says which package it needs."""
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes ``import cv2`` raise ImportError
    images, targets = blobby_batch()
    result = seeded(0)(images, targets)
    assert not torch.equal(result.images, images)
    with pytest.raises(ImportError, match="opencv-contrib-python-headless"):
        seeded(0, backend="opencv")(images, targets)


@needs_cv2
@pytest.mark.parametrize("seed", range(3))
def test_torch_backend_is_the_opencv_backend(seed):
    """Both backends give the same mixed batch: the port's map equals OpenCV's on the first partner."""
    images, targets = blobby_batch(b=8, h=32, w=32, seed=seed)
    a = seeded(seed, backend="torch")(images, targets)
    b = seeded(seed, backend="opencv")(images, targets)
    assert torch.equal(a.images, b.images) and torch.equal(a.lam, b.lam)
    assert not seeded(seed).runs_on_host and seeded(seed, backend="opencv").runs_on_host


def test_bad_arguments():
    with pytest.raises(ValueError, match="beta: expected a value > 0"):
        SaliencyMix(beta=0.0)
    with pytest.raises(ValueError, match=r"prob: expected a probability in \[0, 1\]"):
        SaliencyMix(prob=1.5)
    with pytest.raises(ValueError, match="mode: expected one of 'official', 'per_sample', got 'pixel'"):
        SaliencyMix(mode="pixel")
    images, targets = blobby_batch()
    mixer = seeded(0)
    with pytest.raises(ValueError, match="images: expected a 4-D tensor"):
        mixer(images[0], targets)
    with pytest.raises(ValueError, match="images: expected a 4-D tensor"):
        mixer.mix_pair(images, targets, images[0], targets)
    with pytest.raises(ValueError, match="targets: batch size 7 does not match"):
        mixer(images, targets[:7])
    with pytest.raises(ValueError, match="targets: batch size 7 does not match"):
        mixer.mix_pair(images, targets, images, targets[:7])
    with pytest.raises(ValueError, match="x2: expected the shape of x1"):
        mixer.mix_pair(images, targets, images[:, :, :16], targets)
    with pytest.raises(ValueError, match="images: expected 1 or 3 channels"):
        seeded(0, mode="per_sample").mix_pair(images[:, :2], targets, images[:, :2], targets)


@needs_cv2
def test_cv2_reads_raw_float_bytes_on_float_input():
    """Pins what the official mode relies on (see saliencymix's docstring): on a float32 image,
    cv2 reads byte x of each float32 grey row as the centre value. Emulated with cv2's own grey
    conversion, blurs and integral, then the C++ centre-surround and mixing arithmetic."""
    detector = cv2.saliency.StaticSaliencyFineGrained_create()
    images, _ = blobby_batch(b=4, h=32, w=24, seed=3)
    for img in images:
        hwc = img.numpy().transpose(1, 2, 0)
        grey = cv2.cvtColor(np.ascontiguousarray(hwc), cv2.COLOR_BGR2GRAY)
        grey = cv2.GaussianBlur(cv2.GaussianBlur(grey, (3, 3), 0, 0), (3, 3), 0, 0)
        integral = cv2.integral(grey, sdepth=cv2.CV_32F)
        h, w = grey.shape
        centre = np.ascontiguousarray(grey).view(np.uint8).reshape(h, 4 * w)[:, :w].astype(np.float32)
        ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
        on, off = np.zeros((h, w)), np.zeros((h, w))
        for n in (12, 24, 48, 28, 56, 112):
            y1, y2 = np.clip(ys - n + 1, 0, h), np.clip(ys + n + 1, 0, h)
            x1, x2 = np.clip(xs - n + 1, 0, w), np.clip(xs + n + 1, 0, w)
            window = integral[y2, x2] + integral[y1, x1] - integral[y2, x1] - integral[y1, x2]
            mean = (window - centre) / ((x2 - x1) * (y2 - y1) - 1).astype(np.float32)
            diff = np.trunc(centre - mean)
            on, off = on + np.maximum(diff, 0) % 256, off + np.maximum(-diff, 0) % 256
        # float32 ratio, float64 product; a zero maximum (0 / 0 in C++) gives 0.
        on8, off8 = (
            np.trunc(255.0 * (m.astype(np.float32) / np.float32(m.max())).astype(np.float64)) if m.max() > 0 else m
            for m in (on, off)
        )
        expected = np.trunc(255.0 * (on8 + off8) / max(on8.max(), off8.max())) % 256
        np.testing.assert_array_equal(np.rint(detector.computeSaliency(hwc)[1] * 255), expected)
