"""Mixup."""

import numpy as np
import pytest
import torch

from pretrain.mixing.mixup import Mixup


def test_convex_combination_with_permuted_partner(batch):
    images, targets = batch
    result = Mixup(generator=torch.Generator().manual_seed(0))(images, targets)
    g = torch.Generator().manual_seed(0)
    index = torch.randperm(8, generator=g)
    lam = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g))).beta(1.0, 1.0)
    assert torch.allclose(result.lam, torch.full((8,), lam, dtype=torch.float32))
    assert torch.allclose(result.images, lam * images + (1 - lam) * images[index], atol=1e-6)
    assert torch.equal(result.targets_a, targets) and torch.equal(result.targets_b, targets[index])


def test_per_sample_lambdas_differ(batch):
    result = Mixup(per_sample=True)(*batch)
    assert result.lam.unique().numel() == 8 and ((result.lam >= 0) & (result.lam <= 1)).all()


def test_prob_zero_skips(batch):
    result = Mixup(prob=0.0)(*batch)
    assert torch.equal(result.images, batch[0]) and torch.equal(result.lam, torch.ones(8))


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha: expected a value > 0"):
        Mixup(alpha=0)
    with pytest.raises(ValueError, match="prob: expected a probability"):
        Mixup(prob=1.5)
