"""Crop, resize and mirror a batch of images in one separable resampling, on the images' device.

Per sample and axis, filter taps computed from the crop box (:func:`resize_taps`) reproduce
``torchvision.transforms.v2.functional.resized_crop`` (bilinear, antialias=True) exactly, up to
float rounding: bilinear clamped to the crop's edge pixels when upsampling (a 64 px image cropped
and resized to 64 px or more), the antialiasing triangle filter when shrinking. They are applied
to the whole batch at once, as row gathers or as batched matmuls (:func:`crop_resize`).
``grid_sample`` / ``roi_align`` would read pixels just outside the crop at its edges and would not
antialias. The flip reverses the column taps, so it is free; a per-sample gain (the brightness
factor of :class:`pretrain.data.augment.TrainAugment`) is folded into the row taps.

The taps are made on the host (:func:`crop_resize_taps`, O(B x size) numbers) and applied on the
device (:func:`crop_resize_apply`), so a training step can send them in one non-blocking copy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pretrain.mixing.base import host_to_device

if TYPE_CHECKING:  # augment imports this module; the crop boxes are only read here
    from pretrain.data.augment import AugmentParams


def resize_taps(
    start: Tensor, length: Tensor, in_size: int, out_size: int, flip: Tensor | None = None, gain: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Input indices (int64) and weights (float64) ``[B, out_size, K]``, on the CPU, resizing each
    sample's span ``[start, start + length)`` of an axis to ``out_size`` as torch's antialiased
    bilinear resize of the cropped span does; outputs reversed where ``flip``, scaled by ``gain``.

    Output ``k`` is centred at ``c = (k + 0.5) * length / out_size`` in crop coordinates; span
    pixel ``j`` weighs ``max(0, 1 - |j + 0.5 - c| / max(1, length / out_size))``, renormalised
    over the span. Upsampling, that is bilinear with the sample clamped to the crop's edge pixels
    (K = 2 taps); shrinking, the antialiasing triangle filter. Unused taps have weight 0.
    """
    scale = length.double() / out_size  # [B]
    support = scale.clamp_min(1.0)
    centre = scale.view(-1, 1) * (torch.arange(out_size, dtype=torch.float64) + 0.5)  # [B, out]
    lo = torch.floor(centre - support.view(-1, 1) + 0.5).clamp_min(0.0)  # first pixel inside the support
    taps = int(math.ceil(2.0 * float(support.max())))  # the open support holds at most 2 * support pixels
    rel = lo.unsqueeze(2) + torch.arange(taps, dtype=torch.float64)  # [B, out, K], crop coordinates
    w = (1.0 - (rel + 0.5 - centre.unsqueeze(2)).abs() / support.view(-1, 1, 1)).clamp_min(0.0)
    w = w * (rel < length.double().view(-1, 1, 1))
    w = w / w.sum(2, keepdim=True)
    # Past the span the weight is 0, so clamping those indices into the image changes nothing.
    idx = (rel.long() + start.long().view(-1, 1, 1)).clamp_max(in_size - 1)
    if flip is not None:
        f = flip.view(-1, 1, 1)
        idx, w = torch.where(f, idx.flip(1), idx), torch.where(f, w.flip(1), w)
    if gain is not None:
        w = w * gain.double().view(-1, 1, 1)
    return idx, w


def resize_matrix(idx: Tensor, w: Tensor, in_size: int, device: torch.device) -> Tensor:
    """Dense interpolation matrices ``[B, out, in_size]`` (float32, on ``device``) from taps on ``device``."""
    b, out, _ = idx.shape
    w = w.float()
    device = torch.device(device)
    if device.type == "cpu":
        return torch.zeros(b, out, in_size).scatter_add_(2, idx, w)
    # Off the CPU, a one-hot sum instead of scatter_add_ (no atomics: deterministic-mode safe).
    onehot = idx.unsqueeze(3) == torch.arange(in_size, device=device)
    return (w.unsqueeze(3) * onehot).sum(2)


def _apply_taps(x: Tensor, flat: Tensor, w: Tensor) -> Tensor:
    """``out[b, s] = sum_k w[b, s, k] * x[b, idx[b, s, k]]`` for ``x`` [B, R, L]: [B, S, L], with
    ``flat = idx + b * R`` (rows of the flattened batch) and ``w`` float32 [B, S, K] on x's device.

    Each tap is one ``index_select`` of whole contiguous rows plus a multiply-add.
    """
    b, r, length = x.shape
    s, k = flat.shape[1], flat.shape[2]
    dev = x.device
    rows = x.reshape(b * r, length)
    # Two buffers for any number of taps: select a tap's rows, accumulate it weighted.
    out = torch.empty((b * s, length), device=dev)
    torch.index_select(rows, 0, flat[:, :, 0].reshape(-1), out=out).mul_(w[:, :, 0].reshape(-1, 1))
    tap = torch.empty_like(out) if k > 1 else None
    for t in range(1, k):
        out.addcmul_(torch.index_select(rows, 0, flat[:, :, t].reshape(-1), out=tap), w[:, :, t].reshape(-1, 1))
    return out.view(b, s, length)


def crop_resize_taps(
    params: AugmentParams,
    in_hw: tuple[int, int],
    output_size: tuple[int, int],
    gain: Tensor | None = None,
    method: str = "auto",
) -> dict[str, Any]:
    """The host half of :func:`crop_resize`: the method and the column / row taps of a batch's
    crops (CPU tensors: indices int64, weights float64 with ``gain / 255`` folded into the rows)."""
    (h, w), (sh, sw) = in_hw, output_size
    b = params.top.shape[0]
    if method == "auto":
        method = "taps" if sh <= 2 * h and sw <= 2 * w else "matmul"
    if method not in ("taps", "matmul"):
        raise ValueError(f"crop_resize method {method!r}: expected 'auto', 'taps' or 'matmul'")
    scale = torch.full((b,), 1.0 / 255.0, dtype=torch.float64) if gain is None else gain.double().cpu() / 255.0
    if (h, sh) == (w, sw):
        # Square in and out (the usual case): one call computes both axes' taps, half the small ops.
        no = torch.zeros(b, dtype=torch.bool)
        idx, wts = resize_taps(
            torch.cat([params.left, params.top]),
            torch.cat([params.width, params.height]),
            w,
            sw,
            flip=torch.cat([params.flip.cpu(), no]),
            gain=torch.cat([torch.ones(b, dtype=torch.float64), scale]),
        )
        (col_idx, row_idx), (col_w, row_w) = idx.split(b), wts.split(b)
    else:
        col_idx, col_w = resize_taps(params.left, params.width, w, sw, flip=params.flip)
        row_idx, row_w = resize_taps(params.top, params.height, h, sh, gain=scale)
    if method == "taps":  # rows of the flattened batch: [B, W, 3H] for the columns, [B, H, 3 S_w] for the rows
        batch = torch.arange(b).view(b, 1, 1)
        col_idx, row_idx = col_idx + batch * w, row_idx + batch * h
    return {"method": method, "col_idx": col_idx, "col_w": col_w.float(), "row_idx": row_idx, "row_w": row_w.float()}


def crop_resize_apply(images: Tensor, taps: dict[str, Any], output_size: tuple[int, int]) -> Tensor:
    """The device half of :func:`crop_resize`, with the taps of :func:`crop_resize_taps` on the
    images' device."""
    b, h, w, _ = images.shape
    sh, sw = output_size
    dev = images.device
    if taps["method"] == "taps":
        # Layout [B, W, 3, H]: the column pass gathers whole rows; the uint8 -> float copy transposes.
        x = torch.empty((b, w, 3, h), device=dev).copy_(images.permute(0, 2, 3, 1))
        y = _apply_taps(x.view(b, w, 3 * h), taps["col_idx"], taps["col_w"])  # [B, S_w, 3H]
        y = y.view(b, sw, 3, h).permute(0, 3, 2, 1).contiguous()  # [B, H, 3, S_w]
        z = _apply_taps(y.view(b, h, 3 * sw), taps["row_idx"], taps["row_w"])  # [B, S_h, 3 S_w]
    else:
        # Layout [B, H, 3, W]: each contraction is one bmm over the batch, the result lands as [B, S_h, 3, S_w].
        x = torch.empty((b, h, 3, w), device=dev).copy_(images.permute(0, 1, 3, 2))
        rows = resize_matrix(taps["row_idx"], taps["row_w"], h, dev)  # [B, S_h, H]
        cols = resize_matrix(taps["col_idx"], taps["col_w"], w, dev)  # [B, S_w, W]
        y = torch.bmm(rows, x.view(b, h, 3 * w)).view(b, sh * 3, w)  # [B, S_h 3, W]
        z = torch.bmm(y, cols.transpose(1, 2))  # [B, S_h 3, S_w]
    return z.view(b, sh, 3, sw).permute(0, 2, 1, 3)


def crop_resize(
    images: Tensor,
    params: AugmentParams,
    output_size: tuple[int, int],
    gain: Tensor | None = None,
    method: str = "auto",
) -> Tensor:
    """Crop each sample's box, resize it to ``output_size`` and mirror it where ``params.flip``.

    uint8 ``[B, H, W, 3]`` -> float32 ``[B, 3, S_h, S_w]`` holding ``gain * pixel / 255``
    (``gain`` [B], default 1), as a view of a ``[B, S_h, 3, S_w]`` buffer (``.contiguous()`` if
    needed). Separable, columns then rows, either by ``"taps"`` (a gather of whole rows per filter
    tap: least work when each output pixel reads few inputs) or ``"matmul"`` (two batched matmuls
    with dense per-sample matrices: faster for large upsampling); ``"auto"`` uses taps up to 2x
    upsampling. Both compute the same weights (:func:`resize_taps`) on the host; they reach the
    device in one non-blocking copy.
    """
    taps = crop_resize_taps(params, tuple(images.shape[1:3]), output_size, gain, method)
    return crop_resize_apply(images, host_to_device(taps, images.device), output_size)
