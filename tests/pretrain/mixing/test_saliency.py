"""gradient_saliency: eq. (2)-(3), eval mode, no side effects on the model."""

import pytest
import torch
import torch.nn.functional as F

from pretrain.mixing.saliency import gradient_saliency, reduce_gradient


def test_matches_per_sample_autograd(model, make_batch):
    images, targets = make_batch(b=5)
    sal = gradient_saliency(model, images, targets)
    model.eval()
    for i in range(5):
        x = images[i : i + 1].clone().requires_grad_(True)
        F.cross_entropy(model(x), targets[i : i + 1]).backward()
        assert torch.allclose(sal[i], x.grad[0].abs().amax(dim=0), atol=1e-6, rtol=1e-4)


def test_sample_map_independent_of_batch(model, make_batch):
    images, targets = make_batch(b=6)
    full = gradient_saliency(model, images, targets)
    part = gradient_saliency(model, images[2:4], targets[2:4])
    assert torch.allclose(full[2:4], part, atol=1e-6, rtol=1e-4)


def test_no_side_effects(model, make_batch):
    images, targets = make_batch()
    model.train()
    model.conv.weight.grad = torch.full_like(model.conv.weight, 3.0)
    stats = model.bn.running_mean.clone(), model.bn.num_batches_tracked.clone()
    gradient_saliency(model, images, targets)
    assert model.training
    assert torch.equal(model.conv.weight.grad, torch.full_like(model.conv.weight, 3.0))
    assert model.fc.weight.grad is None
    assert torch.equal(model.bn.running_mean, stats[0]) and torch.equal(model.bn.num_batches_tracked, stats[1])
    model.eval()
    gradient_saliency(model, images, targets)
    assert not model.training
    assert not images.requires_grad


def test_works_under_no_grad(model, make_batch):
    images, targets = make_batch()
    with torch.no_grad():
        sal = gradient_saliency(model, images, targets)
    assert sal.shape == (8, 32, 32) and sal.abs().sum() > 0


def test_reductions():
    g = torch.tensor([[[[1.0]], [[-3.0]], [[2.0]]]])  # [1, 3, 1, 1]
    assert reduce_gradient(g, "max").item() == 3.0
    assert reduce_gradient(g, "rms").item() == pytest.approx((14 / 3) ** 0.5)
    with pytest.raises(ValueError, match="reduction: expected one of"):
        reduce_gradient(g, "mean")


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="images: expected a 4-D tensor"):
        gradient_saliency(model, torch.randn(3, 8, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets: expected shape"):
        gradient_saliency(model, torch.randn(2, 3, 8, 8), torch.zeros(3, dtype=torch.long))
