"""HybridMix against a per-pair Algorithm 2 reference."""
import numpy as np
import pytest
import torch

from pretrain.mixing.hybridmix import HybridMixV1, HybridMixV2, HybridMixV3
from pretrain.mixing.saliency import gradient_saliency


def test_v3_matches_algorithm2_reference(reference_salfmix, model, make_batch):
    images, targets = make_batch(b=8, h=32, w=32)
    saliency = gradient_saliency(model, images, targets)
    result = HybridMixV3(n=4, r=0.3, generator=torch.Generator().manual_seed(11))(images, targets, saliency=saliency)

    g = torch.Generator().manual_seed(11)  # replay the draws in the order HybridMix makes them
    u1 = torch.rand(32, generator=g).view(8, 4)
    z = torch.randint(8, (8,), generator=g)
    u2 = torch.rand(32, generator=g).view(8, 4)
    lam = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g))).beta(1.0, 1.0, 1)[0]
    c = torch.rand(2, generator=g)
    cut = int(32 * np.sqrt(1 - lam))
    cy, cx = int(c[0] * 32), int(c[1] * 32)
    y1, y2 = max(cy - cut // 2, 0), min(cy + cut // 2, 32)
    x1, x2 = max(cx - cut // 2, 0), min(cx + cut // 2, 32)
    for d in range(8):  # Algorithm 2, lines 8-13, one pair at a time
        zd = int(z[d])
        hat1 = reference_salfmix(images[d:d + 1], saliency[d:d + 1], 4, 0.3, u1[d:d + 1])[0]
        # SalfMix(x_z) with x_z's own saliency pass: equal to saliency[z] (eval mode, summed loss).
        own = gradient_saliency(model, images[zd:zd + 1], targets[zd:zd + 1])
        hat2 = reference_salfmix(images[zd:zd + 1], own, 4, 0.3, u2[d:d + 1])[0]
        mixed = hat1.clone()
        mixed[:, y1:y2, x1:x2] = hat2[:, y1:y2, x1:x2]
        assert torch.allclose(result.images[d], mixed)
        assert int(result.targets_b[d]) == int(targets[zd])
    assert torch.allclose(result.lam, torch.full((8,), 1 - (y2 - y1) * (x2 - x1) / 1024.0))
    assert torch.equal(result.targets_a, targets)


def test_v1_is_mixup_of_self_mixed_images(model, make_batch):
    images, targets = make_batch(b=6)
    result = HybridMixV1(n=4, generator=torch.Generator().manual_seed(0))(images, targets, model=model)
    assert result.lam.unique().numel() == 1 and 0 <= float(result.lam[0]) <= 1


def test_partner_modes_and_pair_kwargs(model, make_batch):
    images, targets = make_batch(b=16)
    targets = torch.arange(16)
    saliency = torch.rand(16, 32, 32)
    perm = HybridMixV3(partner="permutation", per_sample=True)(images, targets, saliency=saliency)
    assert sorted(perm.targets_b.tolist()) == list(range(16))  # a permutation
    assert perm.lam.unique().numel() > 1  # per-sample CutMix boxes
    with pytest.raises(ValueError, match="partner: expected one of"):
        HybridMixV3(partner="random")


def test_prob_zero_gives_self_mixed_batch(model, make_batch):
    images, targets = make_batch()
    result = HybridMixV2(prob=0.0, generator=torch.Generator().manual_seed(0))(images, targets, model=model)
    assert torch.equal(result.lam, torch.ones(8)) and torch.equal(result.targets_b, targets)
    assert not torch.equal(result.images, images)  # SalfMix still applied
