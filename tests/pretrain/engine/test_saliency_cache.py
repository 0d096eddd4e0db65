"""The cached saliency source: what it stores, how it reads back, when it falls back to a fresh pass."""
import pytest
import torch
from engine_helpers import BATCH, config, small_opts

from pretrain.config import load_config
from pretrain.engine.saliency_cache import SaliencyCache, pool_saliency, unpool_saliency
from pretrain.engine.trainer import Trainer
from pretrain.mixing import gradient_saliency


def make_trainer(root, tmp_path, method):
    """A trainer with cached saliency whose mixing starts at epoch 2 (epoch 1 steps are unmixed)."""
    opts = small_opts(root, str(tmp_path / "out"), MIX__SALIENCY="cached", MIX__START_EPOCH=2)
    return Trainer(load_config(config(f"tinyimagenet_preact18_{method}"), opts))


@pytest.mark.parametrize("method,grid,reduction", [("hybridmix_v3", 8, "max"), ("puzzlemix", 16, "rms")])
def test_cache_stores_the_pooled_fresh_saliency_of_the_training_loss(tiny_root, tmp_path, method, grid, reduction):
    trainer = make_trainer(tiny_root, tmp_path, method)
    cache = trainer.cache
    assert (cache.grid, cache.reduction) == (grid, reduction)
    images, targets, indices = next(iter(trainer.data.train_loader))
    # the batch the step will see: the same augmentation draw
    x = trainer.data.train_augment(images, torch.Generator().set_state(trainer.aug_gen.get_state()))
    trainer.model.eval()  # gradient_saliency's setting; it restores the mode it finds
    fresh = pool_saliency(gradient_saliency(trainer.model, x, targets, reduction), grid)
    trainer.train_step(images, targets, indices, epoch=1)  # unmixed: the loss is the mean CE

    # exactly this step's samples are filled, nothing else
    assert torch.equal(cache.filled.nonzero()[:, 0], indices.sort().values)
    assert not cache.maps[~cache.filled].any()
    # gradient_saliency sums the CE, the training loss averages it over the batch of 4 (a power
    # of two, so the scale is exact): the stored maps are the fresh ones over 4
    assert torch.equal(cache.maps[indices] * BATCH, fresh)
    # what SalfMix reads from them: the most / least salient cells
    flat = cache.maps[indices].flatten(1)
    assert torch.equal(flat.argmax(1), fresh.flatten(1).argmax(1))
    assert torch.equal(flat.argmin(1), fresh.flatten(1).argmin(1))


def test_lookup_falls_back_to_a_fresh_pass_unless_every_sample_is_filled(tiny_root, tmp_path):
    trainer = make_trainer(tiny_root, tmp_path, "hybridmix_v3")
    cache = trainer.cache
    loader = iter(trainer.data.train_loader)
    images, targets, indices = next(loader)
    other = next(loader)[2]
    trainer.train_step(images, targets, indices, epoch=1)
    x = trainer.data.train_augment(images, torch.Generator().manual_seed(0))
    hit = cache.lookup(indices, 32, 32)
    assert hit is not None and hit.shape == (BATCH, 32, 32)
    assert torch.equal(trainer.saliency_for(x, targets, indices), hit)
    mixed = torch.cat([indices[:-1], other[:1]])  # one unfilled sample
    assert cache.lookup(mixed, 32, 32) is None and cache.lookup(other, 32, 32) is None
    trainer.model.train()
    fresh = trainer.saliency_for(x, targets, mixed)
    assert torch.equal(fresh, gradient_saliency(trainer.model, x, targets, "max"))
    assert trainer.model.training


@pytest.mark.parametrize("grid,h,w", [(8, 32, 32), (4, 32, 32), (16, 64, 64), (5, 32, 32), (4, 30, 34), (1, 7, 7),
                                      (16, 32, 32), (32, 32, 32), (8, 16, 16)])
def test_unpool_then_pool_gives_the_cells_back(grid, h, w):
    pooled = torch.rand(16, grid, grid, generator=torch.Generator().manual_seed(grid + h)) * 1e-3
    up = unpool_saliency(pooled, h, w)
    assert up.shape == (16, h, w)
    back = pool_saliency(up, grid)
    if h // grid <= 2 and w // grid <= 2:  # sums of at most 4 equal floats are exact
        assert torch.equal(back, pooled)
    else:  # float32 rounding of the pooling sum only
        torch.testing.assert_close(back, pooled, rtol=2e-6, atol=0)
    # ...which never reverses two cells: SalfMix's most / least salient cells are the stored ones
    order = pooled.flatten(1).argsort(1)
    assert bool((back.flatten(1).gather(1, order).diff(dim=1) >= 0).all())
    assert torch.equal(back.flatten(1).argmax(1), pooled.flatten(1).argmax(1))
    assert torch.equal(back.flatten(1).argmin(1), pooled.flatten(1).argmin(1))


def test_store_lookup_and_checkpoint_round_trip():
    cache = SaliencyCache(10, 4, "max", torch.device("cpu"))
    grad = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    pooled = cache.pooled_from_gradient(grad)
    assert torch.equal(pooled, pool_saliency(grad.abs().amax(1), 4))
    idx = torch.tensor([7, 2, 5])
    cache.store(idx, pooled)
    torch.testing.assert_close(pool_saliency(cache.lookup(idx, 16, 16), 4), pooled, rtol=2e-6, atol=0)
    assert torch.equal(cache.maps[idx], pooled) and int(cache.filled.sum()) == 3
    assert cache.lookup(torch.tensor([2, 3]), 16, 16) is None
    other = SaliencyCache(10, 4, "max", torch.device("cpu"))
    other.load_state_dict(cache.state_dict())
    assert torch.equal(other.maps, cache.maps) and torch.equal(other.filled, cache.filled)
    with pytest.raises(ValueError, match=r"saliency cache: checkpoint shape \(10, 4, 4\) != \(10, 8, 8\)"):
        SaliencyCache(10, 8, "max", torch.device("cpu")).load_state_dict(cache.state_dict())
