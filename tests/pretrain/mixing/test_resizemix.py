"""ResizeMix."""
import pytest
import torch
import torch.nn.functional as F

from pretrain.mixing.resizemix import ResizeMix


def test_shared_scale_matches_reference():
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(6, 3, 32, 32, generator=g), torch.randn(6, 3, 32, 32, generator=g)
    y = torch.arange(6)
    result = ResizeMix(generator=torch.Generator().manual_seed(4)).mix_pair(x1, y, x2, y + 10)
    d = torch.Generator().manual_seed(4)
    tau = 0.1 + 0.7 * torch.rand(1, generator=d, dtype=torch.float64)
    p = int(32 * float(tau))
    u = torch.rand(12, generator=d).view(6, 2)
    small = F.interpolate(x2, size=(p, p), mode="bilinear", align_corners=False, antialias=True)
    for i in range(6):
        top, left = min(int(u[i, 0] * (33 - p)), 32 - p), min(int(u[i, 1] * (33 - p)), 32 - p)
        ref = x1[i].clone()
        ref[:, top:top + p, left:left + p] = small[i]
        assert torch.equal(result.images[i], ref)
    assert torch.allclose(result.lam, torch.full((6,), 1 - p * p / 1024))


def test_per_sample_lam_is_true_ratio_and_patch_is_whole():
    x1, x2 = torch.zeros(16, 3, 40, 40), torch.ones(16, 3, 40, 40)
    y = torch.arange(16)
    result = ResizeMix(per_sample=True).mix_pair(x1, y, x2, y)
    from_x2 = (result.images != 0).all(dim=1)  # bilinear weights may sum to 1 - 1 ulp
    assert torch.allclose(result.lam, 1 - from_x2.float().mean(dim=(1, 2)))
    for i in range(16):  # the patch is one full square, never clipped
        rows, cols = from_x2[i].nonzero().unbind(1)
        side = int(round(float(from_x2[i].sum()) ** 0.5))
        assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side
    assert ((result.lam >= 1 - 0.8**2 - 1e-6) & (result.lam <= 1 - 0.04 + 0.1)).all()


def test_per_sample_resize_matches_interpolate():
    x2 = torch.randn(1, 3, 32, 32)
    mixer = ResizeMix(per_sample=True, scale_min=0.5, scale_max=0.5)
    result = mixer.mix_pair(torch.zeros_like(x2), torch.tensor([0]), x2, torch.tensor([1]))
    ref = F.interpolate(x2, size=(16, 16), mode="bilinear", align_corners=False)
    found = [result.images[0, :, t:t + 16, l:l + 16] for t in range(17) for l in range(17)]
    assert any(torch.allclose(f, ref[0], atol=1e-5) for f in found)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale_min, scale_max"):
        ResizeMix(scale_min=0.9, scale_max=0.2)
