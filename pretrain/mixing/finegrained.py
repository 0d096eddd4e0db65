"""Batched torch port of OpenCV's fine-grained static saliency for 8-bit grey images.

OpenCV: ``cv2.saliency.StaticSaliencyFineGrained`` (opencv_contrib,
``modules/saliency/src/staticSaliencyFineGrained.cpp``), after Montabone & Soto, "Human detection
using a mobile platform and novel features derived from a visual saliency mechanism", Image and
Vision Computing 28(3), 2010, https://doi.org/10.1016/j.imavis.2009.06.006.

The algorithm, per 8-bit grey image ``g``:

1. Two 3 x 3 Gaussian blurs (sigma 0 -> kernel [1, 2, 1] / 4, border reflect-101), each rounded
   back to 8 bits: OpenCV's bit-exact fixed point gives ``(sum(w * p) + 8) >> 4``.
2. An integral image of the blurred image, stored as float32.
3. At 6 scales n in (12, 24, 48, 28, 56, 112): the window rows ``[y - n + 1, y + n + 1)`` and
   columns likewise, clipped to the image; ``mean = (window_sum - g) / (area - 1)`` (the centre is
   left out) in float32; on = ``trunc(g - mean)`` where positive, off = ``trunc(mean - g)``
   where positive (centre-surround differences, 8-bit).
4. Mixing scales: on and off are summed over the scales; each sum map is scaled to 8 bits by its
   image maximum: ``trunc(255.0 * float32(sum / max))``.
5. Mixing on/off: ``trunc(255.0 * (on + off) / max(max(on), max(off)))``, stored to 8 bits.
6. The result is returned as float32 ``u8 * float32(1 / 255)`` in [0, 1] (OpenCV's output since
   opencv_contrib PR #1736, Aug 2018; the uint8 map before that).

Everything here runs batched on the tensor's device with the same float32/float64 operations in
the same order as the C++ code, so on uint8 input the result equals OpenCV's bit for bit (tested
against the installed cv2 on random and structured images of several sizes). Two C++ corner
cases are reproduced as the x86-64 build behaves (both checked against cv2):

- In step 5, ``on + off`` can exceed the common maximum (a pixel "on" at one scale and "off" at
  another); the C++ cast of a value above 255 to ``uchar`` keeps the low 8 bits, i.e. wraps
  (e.g. 300 -> 44). This is reproduced.
- A map whose maximum is 0 gives 0 / 0 = NaN in the C++ code, which its cast turns into 0: that
  map (or the whole result, for a constant image) is 0.

OpenCV's float32 integral image rounds once its sums pass 2**24 (images above ~256 x 256); the
port then repeats its row-by-row float32 additions (a loop over rows, still batched), and stays
exact (checked at 300 x 300 and 400 x 400).

Differences from OpenCV, on purpose: float input is rounded to the nearest integer and clipped to
0..255 first, i.e. treated as 8-bit grey (OpenCV runs the same code on float images, reading raw
float bytes as centre values; see :mod:`pretrain.mixing.saliencymix`); colour input is not
accepted (convert to grey first, e.g. with :func:`pretrain.mixing.saliencymix.gray_uint8`).
Steps 4-5 use float64, so a device without float64 (Apple MPS) is not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEIGHBOURHOODS = (12, 24, 48, 28, 56, 112)
"""Half-sizes of the centre-surround windows, in OpenCV's order (3*4, 3*4*2, ..., 7*4*2*2)."""


def reflect101_index(n: int, device: torch.device) -> Tensor:
    """Indices ``[1, 0, 1, ..., n-2, n-1, n-2]`` of a length-``n`` axis padded by 1 (reflect-101)."""
    idx = torch.arange(-1, n + 1, device=device)
    idx = torch.where(idx < 0, -idx, idx)
    idx = torch.where(idx >= n, 2 * n - 2 - idx, idx)
    # A length-1 axis reflects onto itself (OpenCV's borderInterpolate gives 0).
    return idx.clamp(0, n - 1)


def blur3x3_u8(gray: Tensor) -> Tensor:
    """OpenCV's ``GaussianBlur(gray, (3, 3), 0)`` on 8-bit values [B, H, W] (float32 integers).

    Shifted adds instead of a convolution: float32 sums of integers below 2**24 are exact in any
    order, while a convolution may run in TF32 on a GPU.
    """
    _, h, w = gray.shape
    p = gray.index_select(1, reflect101_index(h, gray.device))
    p = p.index_select(2, reflect101_index(w, gray.device))
    rows = p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]  # [B, H, W + 2]
    full = rows[:, :, :-2] + 2.0 * rows[:, :, 1:-1] + rows[:, :, 2:]  # sum(w * p), weights sum to 16
    return torch.floor((full + 8.0) / 16.0)


def integral_image(gray: Tensor) -> Tensor:
    """OpenCV's ``integral(gray, CV_32F)`` [B, H + 1, W + 1] of 8-bit values [B, H, W].

    OpenCV sums each row exactly and adds it to the row above in float32. While every sum stays
    below 2**24 that is exact, so one int64 cumsum gives it; larger images take the same
    row-by-row float32 additions (a loop over rows, vectorised over batch and columns).
    """
    b, h, w = gray.shape
    row_sums = gray.long().cumsum(2)
    out = torch.zeros(b, h + 1, w + 1, dtype=torch.float32, device=gray.device)
    if h * w * 255 < 2**24:
        out[:, 1:, 1:] = row_sums.cumsum(1).float()
        return out
    row_sums = row_sums.float()
    for y in range(h):
        out[:, y + 1, 1:] = out[:, y, 1:] + row_sums[:, y]
    return out


def centre_surround(integral: Tensor, gray: Tensor, n: int, exact_sums: bool = False) -> Tensor:
    """Truncated centre-surround difference ``trunc(g - mean)`` [B, H, W] at half-size ``n``.

    Its positive part is OpenCV's "on" map and its negative part's magnitude the "off" map
    (``mean - g`` is exactly ``-(g - mean)`` in IEEE arithmetic, and trunc is odd).
    ``exact_sums``: the integral holds exact integers (8-bit input below 2**24 in all), so the
    window sum may be taken in any order: rows first, then columns (fewer passes); otherwise the
    C++ order of the four corners.
    """
    _, h, w = gray.shape
    dev = gray.device
    ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
    y1, y2 = (ys - n + 1).clamp(0, h), (ys + n + 1).clamp(0, h)
    x1, x2 = (xs - n + 1).clamp(0, w), (xs + n + 1).clamp(0, w)
    if n >= h and n >= w:  # every window is the whole image: one sum per image, no gathers
        window = integral[:, h:, w:]
    elif exact_sums:
        rows = integral.index_select(1, y2) - integral.index_select(1, y1)  # [B, H, W + 1]
        window = rows.index_select(2, x2) - rows.index_select(2, x1)
    else:
        # The corners are separable: two column selects, then four cheap row selects (much faster
        # than broadcast advanced indexing); same float32 order as the C++ ``a + b - c - d``.
        left, right = integral.index_select(2, x1), integral.index_select(2, x2)
        window = (
            right.index_select(1, y2) + left.index_select(1, y1) - left.index_select(1, y2) - right.index_select(1, y1)
        )
    area = ((x2 - x1).view(1, w) * (y2 - y1).view(h, 1) - 1).float()
    mean = (window - gray) / area
    return (gray - mean).trunc_()


def scale_to_u8(sums: Tensor) -> Tensor:
    """``trunc(255.0 * float32(s / max))`` per image [B, H, W]; 0 where the image maximum is 0."""
    peak = sums.amax(dim=(1, 2), keepdim=True)
    ratio = sums / peak  # float32 division, as the C++ ``(float)s / (float)max``
    scaled = torch.trunc(255.0 * ratio.double())
    return torch.where(peak > 0, scaled, torch.zeros((), dtype=scaled.dtype, device=sums.device))


def mix_on_off(on: Tensor, off: Tensor) -> Tensor:
    """``uchar(trunc(255.0 * (on + off) / max(max on, max off)))`` [B, H, W] as float64 0..255.

    Values above 255 wrap modulo 256 as the C++ cast does on x86-64; a zero maximum gives 0.
    """
    peak = torch.maximum(on.amax(dim=(1, 2), keepdim=True), off.amax(dim=(1, 2), keepdim=True))
    mixed = torch.trunc(255.0 * (on + off) / peak)
    mixed = torch.where(peak > 0, mixed, torch.zeros((), dtype=mixed.dtype, device=on.device))
    return torch.remainder(mixed, 256.0)


def fine_grained_saliency_u8(gray: Tensor) -> Tensor:
    """OpenCV's fine-grained saliency of grey images [B, H, W] as 8-bit values (float32 0..255).

    ``gray`` is uint8, or float in 0..255 (rounded to the nearest integer and clipped first).
    """
    if not isinstance(gray, Tensor) or gray.dim() != 3:
        shape = tuple(gray.shape) if isinstance(gray, Tensor) else type(gray).__name__
        raise ValueError(f"gray: expected a 3-D tensor [B, H, W] of 8-bit grey values, got {shape}")
    if gray.dtype == torch.bool or gray.is_complex() or gray.numel() == 0:
        raise ValueError(f"gray: expected a non-empty uint8 or float tensor, got {gray.dtype} {tuple(gray.shape)}")
    g = gray.float().round().clamp(0.0, 255.0)
    if g.shape[1] * g.shape[2] == 1:
        # A 1 x 1 window has area - 1 = 0: the C++ 0 / 0 = NaN fails both "> 0" tests -> 0.
        return torch.zeros_like(g)
    g = blur3x3_u8(blur3x3_u8(g))
    return _scales_and_mix(integral_image(g), g, eight_bit=g.shape[1] * g.shape[2] * 255 < 2**24)


def _scales_and_mix(integral: Tensor, centre: Tensor, eight_bit: bool = False) -> Tensor:
    """Steps 3-5 (see the module docstring) from the integral image and the centre values.

    ``eight_bit``: 8-bit centres and an exact integral (the common case): the differences lie in
    [-255, 255], so the on and off sums come from the sums of |d| and d (exact small integers).
    """
    if eight_bit:
        total_abs = torch.zeros_like(centre)
        total = torch.zeros_like(centre)
        for n in NEIGHBOURHOODS:  # six scales, each vectorised over the batch
            diff = centre_surround(integral, centre, n, exact_sums=True)
            total_abs += diff.abs()
            total += diff
        on_sum, off_sum = (total_abs + total) * 0.5, (total_abs - total) * 0.5
    else:
        on_sum = torch.zeros_like(centre)
        off_sum = torch.zeros_like(centre)
        for n in NEIGHBOURHOODS:
            diff = centre_surround(integral, centre, n)
            # The C++ (uchar) cast keeps the low 8 bits of a difference above 255 (the raw-byte
            # centres of float input reach that; 8-bit input never does).
            on_sum += torch.remainder(diff.clamp_min(0.0), 256.0)
            off_sum += torch.remainder((-diff).clamp_min(0.0), 256.0)
    return mix_on_off(scale_to_u8(on_sum), scale_to_u8(off_sum)).float()


# ---------------------------------------------------------------------------------------------
# OpenCV on float32 input: what SaliencyMix's official code calls (a normalised float image)
# ---------------------------------------------------------------------------------------------
# cvtColor(BGR2GRAY) weights of a float image, as float32 (channel 0 is OpenCV's blue).
_BGR2GRAY_F32 = (0.114, 0.587, 0.299)


def _fma32(a: Tensor, b: float, c: Tensor) -> Tensor:
    """float32 ``fma(a, b, c)``: the float32 product is exact in float64, so one float64 sum
    rounded to float32 is the fused result (a double rounding could differ once in ~2**29)."""
    return (a.double() * b + c.double()).float()


def grey_float_bgr(images: Tensor) -> Tensor:
    """``cv2.cvtColor(hwc, COLOR_BGR2GRAY)`` of float32 images [B, 3, H, W] -> [B, H, W].

    OpenCV's vectorised float path: ``fma(c2, 0.299, fma(c0, 0.114, c1 * 0.587))`` in float32,
    bit-exact with cv2 5.x on x86-64 (AVX2) on rows of a multiple of 8 pixels. OpenCV's code for
    a row's last 2-7 pixels rounds two of them differently in about one row in five (1 ulp); the
    saliency maps still matched on every image tested at such widths (17 x 29, 24 x 36, 28 x 28,
    40 x 20), because only the left quarter of a row is read as centre values and 1-ulp changes
    of the window sums did not move a truncation."""
    wb, wg, wr = (float(torch.tensor(v, dtype=torch.float32)) for v in _BGR2GRAY_F32)
    x = images.float()
    return _fma32(x[:, 2], wr, _fma32(x[:, 0], wb, x[:, 1] * wg))


def blur3x3_f32(gray: Tensor) -> Tensor:
    """``cv2.GaussianBlur(gray, (3, 3), 0)`` on float32 [B, H, W]: rows, then columns, each
    ``0.5 * centre + 0.25 * (left + right)`` with reflect-101 borders (bit-exact with cv2)."""
    _, h, w = gray.shape
    p = gray.index_select(2, reflect101_index(w, gray.device))
    rows = 0.5 * p[:, :, 1:-1] + 0.25 * (p[:, :, :-2] + p[:, :, 2:])
    p = rows.index_select(1, reflect101_index(h, gray.device))
    return 0.5 * p[:, 1:-1] + 0.25 * (p[:, :-2] + p[:, 2:])


def fine_grained_saliency_float_u8(images: Tensor) -> Tensor:
    """OpenCV's fine-grained saliency of float32 images [B, C, H, W] (C = 3, or 1), as OpenCV
    computes it on float input, as 8-bit values (float32 0..255): the map the official SaliencyMix
    code gets from ``computeSaliency`` on a normalised image.

    On float input OpenCV converts to float grey, blurs in float32, takes a float32 integral
    image, and reads each centre value as ``gray.at<uchar>(y, x)``: byte ``x`` of row ``y``'s
    float32 data (bytes 0..3 of the float at column x // 4, little-endian; see
    :mod:`pretrain.mixing.saliencymix`). Reproduced here on the tensors' device: the grey and blur
    steps bit for bit, the raw bytes by reinterpreting the float32 grey as bytes, the integral in
    float64 (OpenCV's own float32 summation order is its library's; the truncated centre-surround
    values it feeds did not differ on any image tested). Equal to cv2 on every map tested (random
    normal images at 32 and 64 px, Fashion-MNIST at 28 and 32 px).
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected [B, 1 or 3, H, W], got {tuple(images.shape)}")
    grey = grey_float_bgr(images) if images.shape[1] == 3 else images[:, 0].float()
    g = blur3x3_f32(blur3x3_f32(grey)).contiguous()
    b, h, w = g.shape
    if h * w == 1:
        return torch.zeros_like(g)
    integral = torch.zeros(b, h + 1, w + 1, dtype=torch.float32, device=g.device)
    integral[:, 1:, 1:] = g.double().cumsum(2).cumsum(1).float()
    centre = g.view(torch.uint8).view(b, h, 4 * w)[:, :, :w].float()  # OpenCV's gray.at<uchar>(y, x)
    return _scales_and_mix(integral, centre)


def fine_grained_saliency(gray: Tensor) -> Tensor:
    """OpenCV's fine-grained saliency [B, H, W] of 8-bit grey images, float32 in [0, 1].

    Equal to ``cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(g)[1]`` for each
    uint8 image ``g`` (see the module docstring for the exactness limits).
    """
    # OpenCV's convertTo multiplies by the float32 scale 1/255 (not a division by 255).
    scale = torch.tensor(1.0 / 255.0, dtype=torch.float32, device=gray.device)
    return fine_grained_saliency_u8(gray) * scale
