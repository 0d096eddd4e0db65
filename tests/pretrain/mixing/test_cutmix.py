"""CutMix against the official per-batch procedure."""

import numpy as np
import pytest
import torch

from pretrain.mixing.cutmix import CutMix


def official_cutmix(images, targets, seed, beta=1.0):
    """The official training-loop code, with its draws taken from the same generator."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(images.shape[0], generator=g)
    lam = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g))).beta(beta, beta, 1)[0]
    u = torch.rand(2, generator=g)
    h, w = images.shape[-2:]
    cut_h, cut_w = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
    cy, cx = int(u[0] * h), int(u[1] * w)
    y1, y2 = np.clip(cy - cut_h // 2, 0, h), np.clip(cy + cut_h // 2, 0, h)
    x1, x2 = np.clip(cx - cut_w // 2, 0, w), np.clip(cx + cut_w // 2, 0, w)
    out = images.clone()
    out[:, :, y1:y2, x1:x2] = images[index, :, y1:y2, x1:x2]
    return out, targets[index], 1 - (y2 - y1) * (x2 - x1) / (h * w)


@pytest.mark.parametrize("seed", range(5))
def test_matches_official(make_batch, seed):
    images, targets = make_batch(b=8, h=32, w=24)
    result = CutMix(generator=torch.Generator().manual_seed(seed))(images, targets)
    out, tb, lam = official_cutmix(images, targets, seed)
    assert torch.equal(result.images, out) and torch.equal(result.targets_b, tb)
    assert torch.allclose(result.lam, torch.full((8,), lam, dtype=torch.float32))


def test_per_sample_lam_is_true_pixel_ratio():
    x1, x2 = torch.zeros(16, 3, 32, 32), torch.ones(16, 3, 32, 32)
    y = torch.arange(16)
    result = CutMix(per_sample=True).mix_pair(x1, y, x2, y.flip(0))
    from_x1 = (result.images == 0).all(dim=1).float().mean(dim=(1, 2))
    assert torch.allclose(result.lam, from_x1)
    assert result.lam.unique().numel() > 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="beta: expected a value > 0"):
        CutMix(beta=-1)
