"""Shared batched geometry: boxes, masks, patch placement, pooled saliency cells.

Pure functions on tensors, vectorised over the batch on the tensors' device. Boxes are integer
tensors ``[B, 4]`` as ``(y1, x1, y2, x2)``, half-open: rows ``y1 <= i < y2``, cols ``x1 <= j < x2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def centered_boxes(cy: Tensor, cx: Tensor, cut_h: Tensor, cut_w: Tensor, h: int, w: int) -> Tensor:
    """Boxes ``[cy - cut_h//2, cy + cut_h//2)`` x ``[cx - cut_w//2, cx + cut_w//2)`` clipped to the image.

    This is the box of the official CutMix / SaliencyMix / Cutout code: the side is
    ``2 * (cut // 2)`` before clipping, and clipping can shrink it at the borders.
    """
    half_h, half_w = cut_h // 2, cut_w // 2
    y1 = (cy - half_h).clamp(0, h)
    y2 = (cy + half_h).clamp(0, h)
    x1 = (cx - half_w).clamp(0, w)
    x2 = (cx + half_w).clamp(0, w)
    return torch.stack([y1, x1, y2, x2], dim=1).long()


def cut_size(lam: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """CutMix's cut side: ``int(H * sqrt(1 - lam))`` and ``int(W * sqrt(1 - lam))``."""
    rat = torch.sqrt(1.0 - lam.double())
    return (h * rat).floor().long(), (w * rat).floor().long()


def box_area(boxes: Tensor) -> Tensor:
    """Area [B] of boxes [B, 4]."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_mask(boxes: Tensor, h: int, w: int) -> Tensor:
    """Boolean mask [B, 1, H, W], True inside each sample's box."""
    rows = torch.arange(h, device=boxes.device).view(1, h, 1)
    cols = torch.arange(w, device=boxes.device).view(1, 1, w)
    y1, x1, y2, x2 = (boxes[:, k].view(-1, 1, 1) for k in range(4))
    inside = (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
    return inside.unsqueeze(1)


def channels_last(x: Tensor) -> bool:
    """Whether ``x`` [B, C, H, W] is laid out channels_last (and not also plain contiguous)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def like(mask: Tensor, images: Tensor) -> Tensor:
    """``mask`` [B, 1, H, W] with the memory layout of ``images``, so that an elementwise op of the
    two (``torch.where``, ``masked_fill``) keeps the images' layout (channels_last stays so)."""
    if channels_last(images):
        return mask.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    return mask


def _patch_index(shape: tuple[int, ...], yx: Tensor, size: tuple[int, int], nhwc: bool = False) -> Tensor:
    """Flat indices of each sample's patch, [B*C*ph*pw], into a contiguous [B, C, H, W] tensor,
    or into its contiguous [B, H, W, C] permutation (a channels_last tensor) with ``nhwc``."""
    b, c, h, w = shape
    ph, pw = size
    dev = yx.device
    rows = yx[:, 0:1] + torch.arange(ph, device=dev)  # [B, ph]
    cols = yx[:, 1:2] + torch.arange(pw, device=dev)  # [B, pw]
    if nhwc:
        pixel = (rows.unsqueeze(2) * w + cols.unsqueeze(1)) * c  # [B, ph, pw]
        base = torch.arange(b, device=dev).view(b, 1, 1, 1) * (h * w * c) + torch.arange(c, device=dev).view(1, 1, 1, c)
        return (base + pixel.unsqueeze(3)).reshape(-1)
    offset = rows.unsqueeze(2) * w + cols.unsqueeze(1)  # [B, ph, pw]
    plane = (torch.arange(b, device=dev).view(b, 1) * c + torch.arange(c, device=dev).view(1, c)) * (h * w)
    return (plane.view(b, c, 1, 1) + offset.unsqueeze(1)).reshape(-1)


def square_boxes(yx: Tensor, side: int) -> Tensor:
    """Boxes [B, 4] of ``side`` x ``side`` squares with top-left corners ``yx`` [B, 2]."""
    return torch.cat([yx, yx + side], dim=1)


def paste_boxes(x1: Tensor, x2: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """``x1`` [B, C, H, W] with each sample's box [B, 4] replaced by the same region of ``x2``.

    Returns the mixed images and ``lam`` [B] = the fraction of pixels still from ``x1``.
    """
    h, w = x1.shape[-2:]
    mixed = torch.where(like(box_mask(boxes, h, w), x1), x2, x1)
    lam = 1.0 - box_area(boxes).double() / (h * w)
    return mixed, lam.float()


def paste_patches(dst: Tensor, src: Tensor, src_yx: Tensor, dst_yx: Tensor, size: tuple[int, int]) -> Tensor:
    """A copy of ``dst`` [B, C, H, W] with ``src[b]``'s patch at ``src_yx[b]`` pasted at ``dst_yx[b]``.

    Every patch is ``size = (ph, pw)`` and must lie inside both images. ``src`` [B, C, Hs, Ws] may
    be ``dst`` itself: patches are read from the unmodified source, so overlapping patches are
    well defined. One flat gather of the B*C*ph*pw patch pixels and one scatter into the copy:
    the work is proportional to the patches, not to the images.
    """
    if channels_last(dst):  # the same on the [B, H, W, C] view, which is contiguous: the result stays channels_last
        out = dst.clone(memory_format=torch.channels_last)
        src_hwc = src.permute(0, 2, 3, 1).contiguous()
        values = torch.take(src_hwc, _patch_index(tuple(src.shape), src_yx, size, nhwc=True))
        out.permute(0, 2, 3, 1).put_(_patch_index(tuple(out.shape), dst_yx, size, nhwc=True), values)
        return out
    out = dst.contiguous().clone()
    values = torch.take(src.contiguous(), _patch_index(tuple(src.shape), src_yx, size))
    return out.put_(_patch_index(tuple(out.shape), dst_yx, size), values)


def cell_kernel(h: int, w: int, n: int) -> tuple[int, int]:
    """The pooling kernel (= stride) of an ``n`` x ``n`` grid on an H x W map: ``(H // n, W // n)``."""
    return h // n, w // n


def pool_cells(saliency: Tensor, kernel: tuple[int, int]) -> Tensor:
    """Average-pool ``saliency`` [B, H, W] with kernel = stride = ``kernel``, no padding: [B, rows, cols].

    ``rows = ceil(H / kh)``: when the kernel does not divide the side, the remainder rows (and
    columns) form one more, smaller cell, averaged over the pixels it has, so no pixel is ignored.
    """
    kh, kw = kernel
    return F.avg_pool2d(saliency.unsqueeze(1).float(), (kh, kw), stride=(kh, kw), ceil_mode=True)[:, 0]


def _cell_of(flat: Tensor, cols: int, kernel: tuple[int, int], hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Top-left pixel and size, each [B, 2], of the cells at row-major indices ``flat`` [B]."""
    (kh, kw), (h, w) = kernel, hw
    # Python numbers, not device tensors: nothing is copied from the host inside a step.
    y, x = (flat // cols) * kh, (flat % cols) * kw
    top = torch.stack([y, x], dim=1)
    size = torch.stack([(h - y).clamp(max=kh), (w - x).clamp(max=kw)], dim=1)  # the remainder cells are smaller
    return top, size


def extreme_cells(saliency: Tensor, kernel: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The most and least salient cells of ``saliency`` [B, H, W] pooled by :func:`pool_cells`.

    Returns ``(top_max, size_max, top_min, size_min)``, each [B, 2] as ``(y, x)``: the top-left
    pixel and the size of the argmax and of the argmin cell. ``kernel = (1, 1)`` is pixel level.
    Ties go to the first cell in row-major order.
    """
    pooled = pool_cells(saliency, kernel)
    flat, cols = pooled.flatten(1), pooled.shape[-1]
    hw = tuple(saliency.shape[-2:])
    top_max, size_max = _cell_of(flat.argmax(dim=1), cols, kernel, hw)
    top_min, size_min = _cell_of(flat.argmin(dim=1), cols, kernel, hw)
    return top_max, size_max, top_min, size_min


def patch_range(cell_start: Tensor, cell_size: Tensor | int, patch: int, length: Tensor | int) -> tuple[Tensor, Tensor]:
    """Inclusive range ``[lo, hi]`` of patch starts for a patch of side ``patch`` (elementwise).

    The patch must lie inside ``[0, length)`` and contain the cell ``[c, c + cell_size)`` when it
    is at least as large as the cell; a patch smaller than the cell lies inside the cell.
    ``cell_size`` and ``length`` broadcast against ``cell_start`` (e.g. one value per axis).
    """
    far = cell_start + cell_size - patch
    lo = torch.minimum(cell_start, far).clamp(min=0)
    top = torch.maximum(cell_start, far)
    hi = top.clamp(max=length - patch) if isinstance(length, int) else torch.minimum(top, length - patch)
    return lo, hi


def patch_containing(cell_yx: Tensor, cell_size: Tensor, patch: int, hw: tuple[int, int], u: Tensor) -> Tensor:
    """Top-left ``(y, x)`` [N, 2] of a ``patch`` x ``patch`` square drawn uniformly among the
    positions inside the image that contain the cell at ``cell_yx`` [N, 2] of size ``cell_size``
    [N, 2] (see :func:`patch_range`); ``u`` [N, 2] holds uniform draws in [0, 1)."""
    (h, w), cy, cx = hw, cell_yx[:, 0], cell_yx[:, 1]
    sy, sx = (cell_size[:, 0], cell_size[:, 1]) if isinstance(cell_size, Tensor) else cell_size
    lo_y, hi_y = patch_range(cy, sy, patch, h)
    lo_x, hi_x = patch_range(cx, sx, patch, w)
    lo, hi = torch.stack([lo_y, lo_x], dim=1), torch.stack([hi_y, hi_x], dim=1)
    span = (hi - lo + 1).to(u.dtype)
    return lo + torch.minimum((u * span).floor().long(), hi - lo)


def random_centered_boxes(cut_h: Tensor, cut_w: Tensor, h: int, w: int, u: Tensor) -> Tensor:
    """Boxes of side ``cut`` centred on a pixel drawn uniformly over the image, clipped.

    ``u`` [B, 2] holds uniform draws in [0, 1) for the centre row and column; this is the
    ``randint(H)``, ``randint(W)`` centre of the official CutMix and Cutout code.
    """
    cy = (u[:, 0] * h).floor().long().clamp(max=h - 1)
    cx = (u[:, 1] * w).floor().long().clamp(max=w - 1)
    return centered_boxes(cy, cx, cut_h, cut_w, h, w)
