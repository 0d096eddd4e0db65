"""HybridMix against a per-pair Algorithm 2 reference."""

import numpy as np
import pytest
import torch

from pretrain.mixing.hybridmix import HybridMixV1, HybridMixV2, HybridMixV3
from pretrain.mixing.saliency import gradient_saliency


def _replay_v3(model, images, targets, saliency, seed, per_pair, reference_salfmix):
    """HybridMix v3 one pair at a time (Algorithm 2, lines 8-13) with the mixer's draws."""
    b, _, h, w = images.shape
    g = torch.Generator().manual_seed(seed)  # replay the draws in the order HybridMix makes them
    u1 = torch.rand(4 * b, generator=g).view(b, 4)
    z = torch.randint(b, (b,), generator=g)
    u2 = torch.rand(4 * b, generator=g).view(b, 4)
    k = b if per_pair else 1
    lams = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g))).beta(1.0, 1.0, k)
    c = torch.rand(2 * k, generator=g).view(k, 2)
    out, lam_out = [], []
    for d in range(b):
        zd, j = int(z[d]), d if per_pair else 0
        hat1 = reference_salfmix(images[d : d + 1], saliency[d : d + 1], 4, 0.3, u1[d : d + 1])[0]
        # SalfMix(x_z) with x_z's own saliency pass: equal to saliency[z] (eval mode, summed loss).
        own = gradient_saliency(model, images[zd : zd + 1], targets[zd : zd + 1])
        hat2 = reference_salfmix(images[zd : zd + 1], own, 4, 0.3, u2[d : d + 1])[0]
        cut = int(h * np.sqrt(1 - lams[j]))
        cy, cx = int(c[j, 0] * h), int(c[j, 1] * w)
        y1, y2 = max(cy - cut // 2, 0), min(cy + cut // 2, h)
        x1, x2 = max(cx - cut // 2, 0), min(cx + cut // 2, w)
        mixed = hat1.clone()
        mixed[:, y1:y2, x1:x2] = hat2[:, y1:y2, x1:x2]  # T_t = CutMix on this pair
        out.append(mixed)
        lam_out.append(1 - (y2 - y1) * (x2 - x1) / (h * w))
    return torch.stack(out), z, torch.tensor(lam_out, dtype=torch.float32)


@pytest.mark.parametrize("per_pair", [True, False])
def test_v3_matches_algorithm2_reference(reference_salfmix, model, make_batch, per_pair):
    images, targets = make_batch(b=8, h=32, w=32)
    saliency = gradient_saliency(model, images, targets)
    mixer = HybridMixV3(n=4, r=0.3, per_pair=per_pair, generator=torch.Generator().manual_seed(11))
    result = mixer(images, targets, saliency=saliency)
    ref, z, lam = _replay_v3(model, images, targets, saliency, 11, per_pair, reference_salfmix)
    assert torch.allclose(result.images, ref)
    assert torch.equal(result.targets_b, targets[z]) and torch.equal(result.targets_a, targets)
    assert torch.allclose(result.lam, lam)
    assert (lam.unique().numel() > 1) == per_pair


def test_v1_draws_lam_per_pair(model, make_batch):
    images, targets = make_batch(b=6)
    result = HybridMixV1(n=4, generator=torch.Generator().manual_seed(0))(images, targets, model=model)
    assert result.lam.unique().numel() == 6 and bool(((result.lam >= 0) & (result.lam <= 1)).all())
    per_batch = HybridMixV1(n=4, per_pair=False, generator=torch.Generator().manual_seed(0))
    assert per_batch(images, targets, model=model).lam.unique().numel() == 1


def test_v2_per_pair_uses_each_partners_own_peak(model, make_batch):
    images, targets = make_batch(b=8)
    result = HybridMixV2(n=4, generator=torch.Generator().manual_seed(3))(images, targets, model=model)
    assert result.lam.unique().numel() > 1
    assert HybridMixV2(per_pair=True).pair.mode == "per_sample"
    assert HybridMixV2(per_pair=False).pair.mode == "official"
    with pytest.raises(ValueError, match="mode: HybridMix v2 per pair"):
        HybridMixV2(per_pair=True, mode="official")
    with pytest.raises(ValueError, match="per_sample: HybridMix sets it"):
        HybridMixV3(per_sample=False)


def test_partner_modes_and_pair_kwargs(model, make_batch):
    images, targets = make_batch(b=16)
    targets = torch.arange(16)
    saliency = torch.rand(16, 32, 32)
    perm = HybridMixV3(partner="permutation")(images, targets, saliency=saliency)
    assert sorted(perm.targets_b.tolist()) == list(range(16))  # a permutation
    assert perm.lam.unique().numel() > 1  # per-sample CutMix boxes
    with pytest.raises(ValueError, match="partner: expected one of"):
        HybridMixV3(partner="random")


def test_prob_zero_gives_self_mixed_batch(model, make_batch):
    images, targets = make_batch()
    result = HybridMixV2(prob=0.0, generator=torch.Generator().manual_seed(0))(images, targets, model=model)
    assert torch.equal(result.lam, torch.ones(8)) and torch.equal(result.targets_b, targets)
    assert not torch.equal(result.images, images)  # SalfMix still applied
