"""Shared geometry against slicing references."""

import torch

from pretrain.mixing.geometry import box_area, box_mask, centered_boxes, paste_patches, patch_range


def test_box_mask_matches_slicing():
    boxes = torch.tensor([[0, 0, 3, 5], [2, 1, 8, 2], [4, 4, 4, 7]])
    mask = box_mask(boxes, 8, 8)
    for i, (y1, x1, y2, x2) in enumerate(boxes.tolist()):
        ref = torch.zeros(8, 8, dtype=torch.bool)
        ref[y1:y2, x1:x2] = True
        assert torch.equal(mask[i, 0], ref)
    assert box_area(boxes).tolist() == [15, 6, 0]


def test_centered_boxes_clip_like_official():
    boxes = centered_boxes(
        torch.tensor([0, 5]), torch.tensor([9, 5]), torch.tensor([5, 5]), torch.tensor([4, 3]), 10, 10
    )
    # cut 5 -> half 2 -> [cy-2, cy+2); cut 3 -> half 1.
    assert boxes.tolist() == [[0, 7, 2, 10], [3, 4, 7, 6]]


def test_paste_patches_matches_slicing_with_other_source():
    dst, src = torch.randn(3, 2, 9, 9), torch.randn(3, 2, 5, 6)
    src_yx = torch.tensor([[0, 0], [1, 2], [2, 3]])
    dst_yx = torch.tensor([[0, 0], [6, 5], [3, 1]])
    out = paste_patches(dst, src, src_yx, dst_yx, (3, 3))
    for i in range(3):
        ref = dst[i].clone()
        (sy, sx), (dy, dx) = src_yx[i].tolist(), dst_yx[i].tolist()
        ref[:, dy : dy + 3, dx : dx + 3] = src[i, :, sy : sy + 3, sx : sx + 3]
        assert torch.equal(out[i], ref)


def test_patch_range_contains_cell_or_lies_inside():
    for length, cell, patch in [(32, 8, 12), (32, 8, 5), (32, 8, 8), (32, 8, 32)]:
        for c in range(0, length, cell):
            lo, hi = patch_range(torch.tensor([c]), torch.tensor(cell), patch, torch.tensor(length))
            valid = [
                s
                for s in range(length - patch + 1)
                if (s <= c and c + cell <= s + patch) or (patch < cell and c <= s and s + patch <= c + cell)
            ]
            assert list(range(int(lo), int(hi) + 1)) == valid
