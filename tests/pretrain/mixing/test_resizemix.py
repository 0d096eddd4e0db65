"""ResizeMix against a per-sample replay of the authors' loop (trainer.py + getbox_new)."""

import pytest
import torch
import torch.nn.functional as F

from pretrain.mixing.resizemix import ResizeMix


def official_getbox_new(h, w, small_hw, centres):
    """``getbox_new`` one sample at a time: centre uniform over the image, box shifted inside."""
    boxes = []
    for cy, cx in centres:
        y1 = min(max(cy - small_hw[0] // 2, 0), h)
        y2 = min(y1 + small_hw[0], h)
        y1 = min(max(y2 - small_hw[0], 0), h)
        x1 = min(max(cx - small_hw[1] // 2, 0), w)
        x2 = min(x1 + small_hw[1], w)
        x1 = min(max(x2 - small_hw[1], 0), w)
        boxes.append((y1, x1, y2, x2))
    return boxes


def replay(x1, x2, seed, scale=(0.1, 0.8)):
    """The authors' ResizeMix step with this mixer's draws, pasted sample by sample."""
    b, _, h, w = x1.shape
    g = torch.Generator().manual_seed(seed)
    tau = scale[0] + (scale[1] - scale[0]) * float(torch.rand(1, generator=g, dtype=torch.float64))
    u = torch.rand(2 * b, generator=g).view(b, 2)
    centres = [(min(int(u[i, 0] * h), h - 1), min(int(u[i, 1] * w), w - 1)) for i in range(b)]
    small = F.interpolate(x2, scale_factor=tau)  # the authors' call: nearest by default
    out = x1.clone()
    for i, (y1, xa, y2, xb) in enumerate(official_getbox_new(h, w, small.shape[2:], centres)):
        out[i, :, y1:y2, xa:xb] = small[i]
    lam = 1 - small.shape[-1] * small.shape[-2] / (h * w)
    return out, lam


@pytest.mark.parametrize("h,w,seed", [(32, 32, 4), (64, 64, 1), (28, 28, 9), (24, 40, 3)])
def test_matches_the_authors_loop(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.randn(6, 3, h, w, generator=g), torch.randn(6, 3, h, w, generator=g)
    y = torch.arange(6)
    result = ResizeMix(generator=torch.Generator().manual_seed(seed)).mix_pair(x1, y, x2, y + 10)
    ref, lam = replay(x1, x2, seed)
    assert torch.equal(result.images, ref)
    assert torch.allclose(result.lam, torch.full((6,), lam))
    assert torch.equal(result.targets_b, y + 10)


def test_pasted_pixels_are_exact_partner_pixels():
    x1 = torch.full((8, 3, 32, 32), -1.0)
    x2 = torch.rand(8, 3, 32, 32) + torch.arange(8.0).view(8, 1, 1, 1) * 10  # each partner its own range
    result = ResizeMix(generator=torch.Generator().manual_seed(0)).mix_pair(
        x1, torch.zeros(8).long(), x2, torch.ones(8).long()
    )
    for i in range(8):
        pasted = result.images[i][result.images[i] != -1.0]
        assert torch.isin(pasted, x2[i]).all()  # nearest: no interpolated values
        assert abs(1 - pasted.numel() / (3 * 32 * 32) - float(result.lam[i])) < 1e-6


def test_placement_piles_up_at_the_borders():
    # tau = 0.8 on 32 px: a 25-pixel patch; the centre is uniform over 32 rows, the box is shifted
    # back inside, so the top row is 0 whenever cy <= 12: probability 13/32 (not 1/8).
    mixer = ResizeMix(scale=(0.8, 0.8), generator=torch.Generator().manual_seed(0))
    b = 4000
    x1, x2 = torch.zeros(b, 1, 32, 32), torch.ones(b, 1, 32, 32)
    result = mixer.mix_pair(x1, torch.zeros(b).long(), x2, torch.zeros(b).long())
    rows = result.images[:, 0].amax(dim=2)  # [B, 32]: 1 where the patch covers the row
    top = rows.argmax(dim=1)
    assert abs(float((top == 0).float().mean()) - 13 / 32) < 0.03
    assert abs(float((top == 7).float().mean()) - 13 / 32) < 0.03
    assert set(top.tolist()) <= set(range(8))


def test_per_sample_scales_match_interpolate_per_sample():
    g = torch.Generator().manual_seed(2)
    x1, x2 = torch.zeros(16, 3, 32, 32), torch.rand(16, 3, 32, 32, generator=g) + 1.0
    y = torch.arange(16)
    mixer = ResizeMix(per_sample=True, generator=torch.Generator().manual_seed(5))
    result = mixer.mix_pair(x1, y, x2, y)
    d = torch.Generator().manual_seed(5)
    tau = 0.1 + 0.7 * torch.rand(16, generator=d, dtype=torch.float64)
    sides = set()
    for i in range(16):
        small = F.interpolate(x2[i : i + 1], scale_factor=float(tau[i]))[0]
        inside = (result.images[i] != 0).all(dim=0).nonzero()
        (y1, xa), (y2, xb) = inside.min(0).values.tolist(), (inside.max(0).values + 1).tolist()
        assert torch.equal(result.images[i, :, y1:y2, xa:xb], small)
        assert torch.allclose(result.lam[i], torch.tensor(1 - small.shape[1] * small.shape[2] / 1024.0))
        sides.add(small.shape[1])
    assert len(sides) > 1  # per-pair scales


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"scale: expected \(min, max\)"):
        ResizeMix(scale=(0.9, 0.2))
