"""SaliencyMix (Uddin et al., ICLR 2021, https://arxiv.org/abs/2006.01791).

A CutMix whose box is centred on the most salient pixel of the partner image (OpenCV's
fine-grained static saliency, Montabone & Soto 2010) instead of a uniform random pixel.

``mode="official"`` (default) is faithful to the official code (SaliencyMix/SaliencyMix,
``SaliencyMix_CIFAR/saliencymix.py``, ``saliency_bbox``): one ``lam ~ Beta(beta, beta)`` per
batch; the saliency of ONE image, the first partner ``x2[0]``, computed by OpenCV on the CPU from
the normalised float CHW tensor transposed to HWC float32 numpy exactly as the official call
does; its argmax (first maximum in row-major order) is the box centre; box side as CutMix
(``int(H * sqrt(1 - lam))``, likewise W), edges ``centre -+ side // 2`` clipped to the image; the
same box for the whole batch; ``lam = 1 - area / (H * W)``.

What OpenCV actually does with that float32 image (read from the C++ source, then reproduced
bit for bit by a numpy emulation against cv2 5.0 on normalised random images):

1. ``cvtColor(BGR2GRAY)`` keeps float32: grey = 0.114 c0 + 0.587 c1 + 0.299 c2, so with torch's
   RGB order red and blue weights are swapped; values stay normalised (about -2..2.7).
2. Two float 3 x 3 Gaussian blurs and a float32 integral image of that grey image: the local
   means are means of normalised values.
3. The centre value is read with ``gray.at<uchar>(y, x)`` on the float32 matrix, i.e. byte ``x``
   of row ``y``'s raw float32 data: byte ``x % 4`` (little-endian) of the float at column
   ``x // 4``. Only the left quarter of each row is read, and as raw bytes 0..255: bytes 0-1 are
   low mantissa bits (effectively pseudo-random), byte 3 is sign + exponent (63/64 for positive,
   191/192 for negative values of magnitude 0.5..4).
4. ``on = trunc(byte - (window_sum - byte) / (area - 1))`` etc. (then the usual scale and on/off
   mixing): the map is essentially a rescaled copy of those bytes, and its argmax is where some
   mantissa byte is largest. A future OpenCV that fixes the read would change this mode's boxes;
   ``test_saliencymix.py`` pins the behaviour.

So the official box centre is a deterministic but content-free pixel: over 2,000 synthetic
32 x 32 images with one blob, its median distance to the blob (14.5 px) equals that of a uniform
random pixel (14.3 px), with rows biased to the top (first maximum in row-major order). The
official ``(saliencyMap * 255).astype("uint8")`` re-quantisation is exact on OpenCV's float
output since 2018 (``u8 * float32(1/255)``), so the argmax of the map is the official argmax.

Who computes that map (``backend``): ``"torch"`` (default) is
:func:`pretrain.mixing.finegrained.fine_grained_saliency_float_u8`, a batched port of exactly what
OpenCV does with a float image (its float grey conversion and blurs bit for bit, the raw-byte
centre reads), on the images' device: no copy to the host, no Python loop, no OpenCV needed (the
plain ``opencv-python`` of many GPU images has no saliency module). Its maps equal OpenCV's on
every image tested (random normal images at 32 and 64 px, real Fashion-MNIST images at 28 and
32 px: 850 maps, all equal bit for bit, so the same argmax; ``test_saliencymix.py`` checks it
wherever cv2's contrib module is installed). ``"opencv"`` calls OpenCV on the host, as the
official code does: the reference.

``mode="per_sample"`` is the corrected mode: per-sample ``lam ~ Beta(beta, beta)``; each partner
``x2[i]`` is turned into the 8-bit grey image the detector expects (per-image min-max scaling of
the normalised image over all channels to ``round(255 * (x - min) / (max - min))``, then ITU-R 601
grey with OpenCV's 15-bit fixed point, R = channel 0 as in torch tensors); its saliency comes from
:func:`pretrain.mixing.finegrained.fine_grained_saliency` (bit-exact with OpenCV on uint8), batched
on the device; each box is centred on its own partner's argmax; lam per sample from the clipped
area.

Deviations from the official code, both modes:

- Random draws come from the mixer's generator (``lam`` via :func:`pretrain.mixing.base.beta`,
  the partner permutation in :class:`PairMixer`), not from numpy/torch global state.
- The mixed batch is a new tensor (the official loop writes into ``images`` in place).
- ``x2[0]`` is cast to float32 before OpenCV (the official loop always had float32; half
  precision would not reach OpenCV's float path). Only 1- or 3-channel images are accepted.
- The official names ``W = size[1]``, ``H = size[2]`` are swapped, but consistently: the row side
  is ``int(H * sqrt(1 - lam))`` and rows are clipped to H, as here.
- The official scripts mix a batch with probability ``--salmix_prob`` (one ``r ~ U(0, 1)`` per
  batch, mix if ``r < salmix_prob``): 0.5 in the CIFAR script's default and README commands, 1.0
  in the ImageNet/TinyImageNet commands. ``prob`` here is that probability (default 1.0), applied
  by PairMixer; the shipped CIFAR leaves set 0.5.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pretrain.mixing.base import Draws, MixResult, PairMixer, check_pair, check_positive, register
from pretrain.mixing.base import beta as sample_beta
from pretrain.mixing.finegrained import fine_grained_saliency_float_u8, fine_grained_saliency_u8
from pretrain.mixing.geometry import box_mask, centered_boxes, cut_size, paste_boxes

MODES = ("official", "per_sample")
# Who computes the official mode's map: the batched port on the images' device (default) or
# OpenCV on the host (the reference; needs opencv-contrib).
BACKENDS = ("torch", "opencv")

# OpenCV's RGB -> grey for 8-bit images: 15-bit fixed point of 0.299, 0.587, 0.114 (bit-exact
# with cv2 5.0's cvtColor on all 2**24 RGB triples).
_GREY_WEIGHTS = (9798, 19235, 3735)
_GREY_SHIFT = 15


def check_channels(images: Tensor) -> None:
    """Raise ValueError unless ``images`` [B, C, H, W] has 1 (grey) or 3 (RGB) channels."""
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected 1 or 3 channels for saliency, got {images.shape[1]}")


def gray_uint8(images: Tensor) -> Tensor:
    """8-bit grey images [B, H, W] (uint8) from normalised images [B, C, H, W], C in (1, 3).

    Each image is min-max scaled over all its channels to ``round(255 * (x - min) / (max - min))``
    in float32 (a constant image gives 0), then converted to grey as ``cv2.cvtColor(RGB2GRAY)``.
    """
    check_channels(images)
    x = images.float()
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    span = x.amax(dim=(1, 2, 3), keepdim=True) - low
    scaled = torch.where(span > 0, (x - low) / span * 255.0, torch.zeros((), device=x.device))
    u8 = scaled.round().clamp(0, 255).to(torch.int32)
    if u8.shape[1] == 1:
        return u8[:, 0].to(torch.uint8)
    r, g, b = u8[:, 0], u8[:, 1], u8[:, 2]
    wr, wg, wb = _GREY_WEIGHTS
    grey = (r * wr + g * wg + b * wb + (1 << (_GREY_SHIFT - 1))) >> _GREY_SHIFT
    return grey.to(torch.uint8)


def saliency_peaks(saliency: Tensor) -> Tensor:
    """``(row, col)`` [B, 2] of each map's maximum [B, H, W]; ties go to the first in row-major order."""
    w = saliency.shape[-1]
    flat = saliency.flatten(1).argmax(dim=1)
    return torch.stack([flat // w, flat % w], dim=1)


def official_peak(image: Tensor) -> tuple[int, int]:
    """``(row, col)`` of the official SaliencyMix centre for one normalised image [C, H, W].

    OpenCV's fine-grained saliency of ``image`` transposed to HWC float32 numpy, re-quantised with
    ``(map * 255).astype(uint8)`` and argmax'ed, as the official ``saliency_bbox`` does (CPU).
    """
    try:
        import cv2
    except ImportError as err:
        raise ImportError(
            "SaliencyMix mode='official' needs OpenCV with the contrib saliency module: "
            "pip install opencv-contrib-python-headless"
        ) from err
    if not hasattr(cv2, "saliency"):
        raise ImportError(
            "SaliencyMix mode='official' needs cv2.saliency (opencv-contrib), not plain opencv: "
            "pip install opencv-contrib-python-headless"
        )
    hwc = image.detach().float().cpu().numpy().transpose(1, 2, 0)
    _, saliency_map = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(hwc)
    requantised = (saliency_map * 255).astype("uint8")
    row, col = np.unravel_index(np.argmax(requantised, axis=None), requantised.shape)
    return int(row), int(col)


def peak_boxes(peaks: Tensor, lam: Tensor, h: int, w: int) -> Tensor:
    """Boxes [B, 4] with CutMix's side for ``lam`` [B], centred on ``peaks`` [B, 2], clipped."""
    cut_h, cut_w = cut_size(lam, h, w)
    return centered_boxes(peaks[:, 0], peaks[:, 1], cut_h, cut_w, h, w)


def check_pair_channels(x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor) -> None:
    """Raise ValueError unless the two halves are valid same-shape batches with 1 or 3 channels."""
    check_pair(x1, y1, x2, y2)
    check_channels(x2)


@register("saliencymix")
class SaliencyMix(PairMixer):
    """SaliencyMix with ``lam ~ Beta(beta, beta)`` and area-corrected lam (see the module docstring).

    ``mix_pair`` draws exactly one ``beta(self.beta, k, generator)`` (k = 1 in "official" mode,
    k = B in "per_sample" mode) and nothing else, so a test can replay its draws.
    """

    composite = "paste"
    config_args = ("beta", "prob", "mode", "backend")

    def __init__(
        self, beta: float = 1.0, prob: float = 1.0, mode: str = "official", backend: str = "torch", **kwargs
    ) -> None:
        super().__init__(prob=prob, **kwargs)
        self.beta = check_positive("beta", beta)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
        self.mode, self.backend = mode, backend
        # OpenCV's detector (the official mode's reference) reads one image back to the host.
        self.runs_on_host = mode == "official" and backend == "opencv"

    def pair_draws(self, shape: tuple[int, ...]) -> Draws:
        k = 1 if self.mode == "official" else shape[0]
        return {"lam": torch.as_tensor(sample_beta(self.beta, k, self.generator))}

    def mix_pair(self, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, s2: Tensor | None = None) -> MixResult:
        """Mix ``x1[i]`` with ``x2[i]``; ``s2`` is ignored (the saliency comes from the images)."""
        check_pair_channels(x1, y1, x2, y2)
        return super().mix_pair(x1, y1, x2, y2, s2)

    def apply_pair(self, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, s2: Tensor | None, draws: Draws) -> MixResult:
        check_channels(x2)
        b, _, h, w = x1.shape
        lam0 = draws["lam"]
        if self.mode == "official" and self.backend == "opencv":
            peak = torch.tensor([official_peak(x2[0])]).to(x1.device)
            boxes = peak_boxes(peak, lam0, h, w).expand(b, 4)
        elif self.mode == "official":  # the same map, computed by the port on the device
            peak = saliency_peaks(fine_grained_saliency_float_u8(x2[:1]))
            boxes = peak_boxes(peak, lam0, h, w).expand(b, 4)
        else:
            peaks = saliency_peaks(fine_grained_saliency_u8(gray_uint8(x2)))
            boxes = peak_boxes(peaks, lam0, h, w)
        mixed, lam = paste_boxes(x1, x2, boxes)
        return MixResult(mixed, y1, y2, lam, ~box_mask(boxes, h, w)[:, 0])
