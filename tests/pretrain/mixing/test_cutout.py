"""Cutout and Cutout with saliency."""

import pytest
import torch

from pretrain.mixing.cutout import Cutout, CutoutSaliency, cutout


def reference_cutout(images, length, u):
    """Official Cutout per image: centre randint(h), randint(w); clip; zero the hole."""
    out = images.clone()
    b, _, h, w = images.shape
    for i in range(b):
        y, x = min(int(u[i, 0] * h), h - 1), min(int(u[i, 1] * w), w - 1)
        y1, y2 = max(y - length // 2, 0), min(y + length // 2, h)
        x1, x2 = max(x - length // 2, 0), min(x + length // 2, w)
        out[i, :, y1:y2, x1:x2] = 0.0
    return out


def test_matches_reference(make_batch):
    images, targets = make_batch(b=16)
    result = Cutout(generator=torch.Generator().manual_seed(3))(images, targets)
    u = torch.rand(32, generator=torch.Generator().manual_seed(3)).view(16, 2)
    assert torch.equal(result.images, reference_cutout(images, 16, u))
    assert torch.equal(result.lam, torch.ones(16)) and torch.equal(result.targets_b, targets)


def test_hole_is_half_the_image_when_inside():
    images = torch.ones(1, 3, 32, 32)
    out = cutout(images, 16, torch.tensor([[0.5, 0.5]]))
    assert (out == 0).all(dim=1).sum() == 256


def test_saliency_variant_zeros_least_salient_patch(model):
    images = torch.ones(1, 3, 8, 8)
    saliency = torch.ones(1, 8, 8)
    saliency[0, 4:6, 2:4] = 0.0
    out = CutoutSaliency(n=4, r=0.25)(images, torch.tensor([1]), saliency=saliency)
    zero = (out.images[0] == 0).all(dim=0)
    assert zero[4:6, 2:4].all() and zero.sum() == 4


def test_bad_arguments(batch):
    with pytest.raises(ValueError, match="size: expected"):
        Cutout(size=0)
    with pytest.raises(ValueError, match="needs a saliency map"):
        CutoutSaliency()(*batch)
