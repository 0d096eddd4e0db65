"""The torch port of OpenCV's fine-grained saliency against cv2 itself, bit for bit."""

import numpy as np
import pytest
import torch

from pretrain.mixing import finegrained as fg
from pretrain.mixing.finegrained import fine_grained_saliency

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "saliency"):
    pytest.skip("needs opencv-contrib (cv2.saliency)", allow_module_level=True)


def cv2_saliency(images: np.ndarray) -> np.ndarray:
    """cv2's map [B, H, W] (float32 in [0, 1]) for uint8 grey images [B, H, W], one at a time."""
    detector = cv2.saliency.StaticSaliencyFineGrained_create()
    return np.stack([detector.computeSaliency(np.ascontiguousarray(g))[1] for g in images])


def blob_image(h, w, cy, cx, sigma, amplitude, background=128.0, noise=None):
    """A Gaussian blob on a flat background, as uint8."""
    yy, xx = np.mgrid[:h, :w]
    img = background + amplitude * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    if noise is not None:
        img = img + noise
    return np.clip(img, 0, 255).astype(np.uint8)


def structured_batch(rng, h, w, n=6):
    """Blobs with noise, a step edge, a ramp, a checkerboard and a constant image."""
    out = []
    for _ in range(n):
        noise = rng.integers(0, 30, (h, w))
        out.append(
            blob_image(
                h,
                w,
                rng.uniform(0, h),
                rng.uniform(0, w),
                rng.uniform(1, 8),
                rng.uniform(-200, 200),
                rng.uniform(40, 215),
                noise,
            )
        )
    yy, xx = np.mgrid[:h, :w]
    out.append(np.where(xx < w // 3, 30, 220).astype(np.uint8))
    out.append((255 * (yy + xx) / (h + w)).astype(np.uint8))
    out.append((255 * ((yy // 4 + xx // 4) % 2)).astype(np.uint8))
    out.append(np.full((h, w), 93, np.uint8))
    return np.stack(out)


@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (17, 23), (23, 17), (5, 3)])
def test_matches_cv2_on_random_uint8(shape):
    images = np.random.default_rng(sum(shape)).integers(0, 256, (8,) + shape, dtype=np.uint8)
    out = fine_grained_saliency(torch.from_numpy(images))
    assert out.dtype == torch.float32 and out.shape == (8,) + shape
    np.testing.assert_array_equal(out.numpy(), cv2_saliency(images))


@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (17, 23)])
def test_matches_cv2_on_structured_uint8(shape):
    images = structured_batch(np.random.default_rng(shape[0]), *shape)
    out = fine_grained_saliency(torch.from_numpy(images)).numpy()
    np.testing.assert_array_equal(out, cv2_saliency(images))
    assert (out[-1] == 0).all()  # the constant image
    assert np.allclose(out[:-1].max(axis=(1, 2)), 1.0)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (2, 5)])
def test_matches_cv2_on_tiny_images(shape):
    images = np.random.default_rng(0).integers(0, 256, (4,) + shape, dtype=np.uint8)
    np.testing.assert_array_equal(fine_grained_saliency(torch.from_numpy(images)).numpy(), cv2_saliency(images))


def test_on_off_overflow_wraps_like_cv2():
    # A pixel "on" at small scales and "off" at large ones: on + off exceeds the common maximum
    # and the C++ uchar cast wraps it (found by search; single clean blob, no noise).
    img = blob_image(63, 65, 56.3, 17.4, 9.48, 188.0)[None]
    g = fg.blur3x3_u8(fg.blur3x3_u8(torch.from_numpy(img).float()))
    integral = fg.integral_image(g)
    diffs = [fg.centre_surround(integral, g, n) for n in fg.NEIGHBOURHOODS]
    on = fg.scale_to_u8(sum(d.clamp_min(0) for d in diffs))
    off = fg.scale_to_u8(-sum(d.clamp_max(0) for d in diffs))
    assert (on + off > torch.maximum(on.max(), off.max())).any()  # the wrap branch is exercised
    np.testing.assert_array_equal(fine_grained_saliency(torch.from_numpy(img)).numpy(), cv2_saliency(img))


def test_mix_on_off_wraps_and_zero_maximum():
    on = torch.tensor([[[255.0, 200.0]], [[0.0, 0.0]]], dtype=torch.float64)
    off = torch.tensor([[[0.0, 100.0]], [[0.0, 0.0]]], dtype=torch.float64)
    assert fg.mix_on_off(on, off).tolist() == [[[255.0, 300.0 - 256.0]], [[0.0, 0.0]]]


def test_large_image_uses_float32_integral_like_cv2():
    # 300 x 300 bright pixels: the integral passes 2**24 and OpenCV's float32 sums round.
    images = np.random.default_rng(1).integers(200, 256, (1, 300, 300), dtype=np.uint8)
    np.testing.assert_array_equal(fine_grained_saliency(torch.from_numpy(images)).numpy(), cv2_saliency(images))


def test_blur_matches_cv2():
    images = np.random.default_rng(2).integers(0, 256, (4, 17, 23), dtype=np.uint8)
    ours = fg.blur3x3_u8(torch.from_numpy(images).float()).numpy()
    ref = np.stack([cv2.GaussianBlur(g, (3, 3), 0, 0) for g in images])
    np.testing.assert_array_equal(ours, ref)


def test_float_input_is_rounded_8bit():
    images = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (3, 20, 20), dtype=np.uint8))
    jitter = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(fine_grained_saliency(images.double() + 0.98 * (jitter - 0.5)), fine_grained_saliency(images))
    stretched = images.float() * 2 - 255  # -255..255, clipped to 0..255
    clipped = (images.int() * 2 - 255).clamp(0, 255).to(torch.uint8)
    assert torch.equal(fine_grained_saliency(stretched), fine_grained_saliency(clipped))


def test_bad_input():
    with pytest.raises(ValueError, match=r"gray: expected a 3-D tensor \[B, H, W\]"):
        fine_grained_saliency(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="gray: expected a 3-D tensor"):
        fine_grained_saliency(np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="gray: expected a non-empty uint8 or float tensor"):
        fine_grained_saliency(torch.zeros(0, 8, 8))


# --------------------------------------------------------------------------------------------
# The float path: what OpenCV does with the normalised float image SaliencyMix's official code passes
FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def cv2_float_saliency(images: torch.Tensor) -> np.ndarray:
    """cv2's 8-bit map of each float image [B, C, H, W], as the official code calls it (HWC float32)."""
    detector = cv2.saliency.StaticSaliencyFineGrained_create()
    return np.stack(
        [np.rint(detector.computeSaliency(np.ascontiguousarray(x.numpy().transpose(1, 2, 0)))[1] * 255) for x in images]
    )


@pytest.mark.parametrize("shape,scale,shift", [((32, 32), 1.0, 0.0), ((64, 64), 0.5, 0.2), ((24, 36), 2.0, -0.5)])
def test_float_path_matches_cv2_on_generated_images(shape, scale, shift):
    images = torch.randn(40, 3, *shape, generator=torch.Generator().manual_seed(sum(shape))) * scale + shift
    ours = fg.fine_grained_saliency_float_u8(images).numpy()
    np.testing.assert_array_equal(ours, cv2_float_saliency(images))  # every map, bit for bit


@pytest.mark.skipif(not __import__("os").path.isfile(FASHION), reason=f"real Fashion-MNIST not installed ({FASHION})")
@pytest.mark.parametrize("side", [28, 32])
def test_float_path_matches_cv2_on_real_fashion_mnist(side):
    """The official mode's input on the Fashion-MNIST configs: normalised grey replicated to 3
    channels (resized to 32 px as the configs train)."""
    import gzip

    with gzip.open(FASHION) as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:200]
    x = (torch.from_numpy(raw.copy()).float() / 255.0 - 0.2860) / 0.3530
    x = x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    if side != 28:
        x = torch.nn.functional.interpolate(x, size=side, mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_array_equal(fg.fine_grained_saliency_float_u8(x).numpy(), cv2_float_saliency(x))


def test_float_grey_and_blur_are_opencvs_bit_for_bit():
    """Rows of a multiple of 8 pixels: OpenCV's vector code throughout (see grey_float_bgr)."""
    images = torch.randn(20, 3, 17, 32, generator=torch.Generator().manual_seed(4))
    grey = fg.grey_float_bgr(images)
    blurred = fg.blur3x3_f32(grey)
    for i in range(20):
        hwc = np.ascontiguousarray(images[i].numpy().transpose(1, 2, 0))
        ref = cv2.cvtColor(hwc, cv2.COLOR_BGR2GRAY)
        np.testing.assert_array_equal(grey[i].numpy(), ref)
        np.testing.assert_array_equal(blurred[i].numpy(), cv2.GaussianBlur(ref, (3, 3), 0, 0))
