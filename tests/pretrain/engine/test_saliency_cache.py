"""The cached saliency source: source-grid geometry, what a visit stores, what the next visit reads."""

import math

import pytest
import torch
from engine_helpers import BATCH, config, small_opts

from pretrain.config import load_config
from pretrain.data.augment import TrainAugment
from pretrain.engine.saliency_cache import CropGeometry, SaliencyCache, probe_size, source_cells
from pretrain.engine.trainer import Trainer


def reference_cells(top, left, height, width, flip, src, out, grid):
    """Per sample and pixel: the source cell under each output pixel's centre (plain loops)."""
    b = len(top)
    cells = torch.empty(b, out, out, dtype=torch.long)
    for s in range(b):
        for i in range(out):
            for j in range(out):
                jj = out - 1 - j if flip[s] else j
                y = float(top[s]) + (i + 0.5) * float(height[s]) / out
                x = float(left[s]) + (jj + 0.5) * float(width[s]) / out
                cy = min(int(math.floor(y * grid / src)), grid - 1)
                cx = min(int(math.floor(x * grid / src)), grid - 1)
                cells[s, i, j] = cy * grid + cx
    return cells


def random_params(b, src, seed, scale=(0.08, 1.0)):
    aug = TrainAugment(32, scale=scale)
    return aug.sample_params(b, src, src, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("src,out,grid", [(64, 64, 16), (64, 32, 16), (28, 28, 14), (32, 48, 16), (20, 20, 20)])
def test_source_cells_match_a_per_pixel_reference(src, out, grid):
    p = random_params(6, src, seed=src + out)
    fast = source_cells(p.top, p.left, p.height, p.width, p.flip, (src, src), (out, out), (grid, grid), "cpu")
    ref = reference_cells(p.top, p.left, p.height, p.width, p.flip, src, out, grid)
    assert torch.equal(fast.cells, ref)


def test_identity_crop_maps_pixels_to_their_own_cells():
    one = torch.ones(1, dtype=torch.long)
    geo = source_cells(0 * one, 0 * one, 64 * one, 64 * one, torch.tensor([False]), (64, 64), (64, 64), (16, 16), "cpu")
    rows = torch.arange(64) // 4
    assert torch.equal(geo.cells[0], rows.view(64, 1) * 16 + rows.view(1, 64))
    flipped = source_cells(
        0 * one, 0 * one, 64 * one, 64 * one, torch.tensor([True]), (64, 64), (64, 64), (16, 16), "cpu"
    )
    assert torch.equal(flipped.cells[0], geo.cells[0].flip(1))


def render_source(source_maps, geometry):
    """What a visit's input gradient looks like when the saliency is a function of the source cell."""
    b = source_maps.shape[0]
    s = source_maps.flatten(1).gather(1, geometry.cells.flatten(1)).view_as(geometry.cells.float())
    return s.unsqueeze(1).expand(b, 3, *s.shape[1:]).clone() * torch.tensor([1.0, -0.5, 0.25]).view(1, 3, 1, 1)


def test_a_stored_visit_is_served_through_the_next_crop():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(5, 16, 16, generator=g) + 0.1  # each sample's saliency, per source cell
    cache = SaliencyCache(10, (16, 16), "max", torch.device("cpu"), min_coverage=0.0)
    idx = torch.tensor([3, 1, 4, 9, 0])
    p1, p2 = random_params(5, 64, seed=1, scale=(0.5, 1.0)), random_params(5, 64, seed=2, scale=(0.5, 1.0))
    geo1 = source_cells(p1.top, p1.left, p1.height, p1.width, p1.flip, (64, 64), (32, 32), (16, 16), "cpu")
    geo2 = source_cells(p2.top, p2.left, p2.height, p2.width, p2.flip, (64, 64), (32, 32), (16, 16), "cpu")
    maps = cache.observe(render_source(truth, geo1), None, geo1)
    seen = torch.isfinite(maps)
    # every seen cell holds the truth divided by the visit's mean over the seen cells
    scale = (truth.flatten(1) * seen).sum(1) / seen.sum(1)
    torch.testing.assert_close(maps[seen], (truth.flatten(1) / scale.view(-1, 1))[seen])
    assert torch.equal(seen, torch.zeros_like(seen).scatter_(1, geo1.cells.flatten(1), True))
    cache.store(idx, maps, idx.numpy())
    served, missing = cache.lookup(idx, geo2)
    known = seen.gather(1, geo2.cells.flatten(1)).view_as(served)
    expected = (truth.flatten(1) / scale.view(-1, 1)).gather(1, geo2.cells.flatten(1)).view_as(served)
    torch.testing.assert_close(served[known], expected[known])
    fill = maps.nan_to_num(0).gather(1, geo2.cells.flatten(1)).view_as(served)
    mean_known = (fill * known).flatten(1).sum(1) / known.flatten(1).sum(1).clamp(min=1)
    assert torch.allclose(served[~known], mean_known.view(-1, 1, 1).expand_as(served)[~known])
    assert not missing.any()


def test_partner_pixels_do_not_reach_the_cache_and_unseen_cells_are_kept():
    cache = SaliencyCache(4, (16, 16), "max", torch.device("cpu"))
    one = torch.ones(2, dtype=torch.long)
    geo = source_cells(
        0 * one, 0 * one, 64 * one, 64 * one, torch.tensor([False, True]), (64, 64), (64, 64), (16, 16), "cpu"
    )
    grad = torch.ones(2, 3, 64, 64)
    own = torch.ones(2, 64, 64, dtype=torch.bool)
    own[:, :32, :] = False  # the top half came from the partner...
    grad[:, :, :32, :] = 1e6  # ...with a huge gradient that belongs to the partner
    maps = cache.observe(grad, own, geo)
    assert torch.isnan(maps.view(2, 16, 16)[:, :8]).all()  # never seen: NaN
    assert torch.equal(maps.view(2, 16, 16)[:, 8:], torch.ones(2, 8, 16))
    cache.store(torch.tensor([0, 1]), maps, [0, 1])
    second = torch.full((2, 256), float("nan"))
    second[:, :192] = 2.0  # a later visit that saw the top three quarters
    cache.store(torch.tensor([0, 1]), second, [0, 1])
    assert torch.equal(cache.maps[:2, :128], torch.full((2, 128), 2.0))  # first seen now
    assert torch.equal(cache.maps[:2, 128:192], torch.full((2, 64), 1.5))  # seen twice: the mean
    assert torch.equal(cache.maps[:2, 192:], torch.ones(2, 64))  # not seen again: kept
    assert torch.isnan(cache.maps[2:]).all()


def test_samples_without_enough_coverage_need_a_fresh_pass():
    cache = SaliencyCache(3, (4, 4), "max", torch.device("cpu"), min_coverage=0.5)
    cache.maps[0] = 1.0
    cache.maps[1, :4] = 1.0  # only the top row of cells known
    geo = CropGeometry(torch.arange(16).view(1, 4, 4).repeat(3, 1, 1))
    _, missing = cache.lookup(torch.tensor([0, 1, 2]), geo)
    assert missing.tolist() == [False, True, True]


def test_checkpoint_round_trip_and_shape_check():
    cache = SaliencyCache(10, (4, 4), "max", torch.device("cpu"))
    cache.maps[3] = torch.arange(16.0)
    other = SaliencyCache(10, (4, 4), "max", torch.device("cpu"))
    other.load_state_dict(cache.state_dict())
    assert torch.equal(other.maps.nan_to_num(-1), cache.maps.nan_to_num(-1))
    with pytest.raises(
        ValueError, match=r"saliency cache: the checkpoint's cache \(shape \(10, 16\)\) is not this run's"
    ):
        SaliencyCache(10, (8, 8), "max", torch.device("cpu")).load_state_dict(cache.state_dict())


def test_probe_size_is_small():
    assert probe_size(10) == 10 and probe_size(400) == 256 and probe_size(20000) == 312 and probe_size(10**6) == 1024


def make_trainer(root, tmp_path, method):
    """A trainer with cached saliency whose mixing starts at epoch 2 (epoch 1 steps are unmixed)."""
    opts = small_opts(root, str(tmp_path / "out"), MIX__SALIENCY="cached", MIX__START_EPOCH=2)
    return Trainer(load_config(config(f"tinyimagenet_preact18_{method}"), opts))


@pytest.mark.parametrize(
    "method,grid,reduction",
    [("hybridmix_v3", (16, 16), "max"), ("puzzlemix", (16, 16), "rms"), ("salfmix_nopool", (64, 64), "max")],
)
def test_trainer_builds_the_method_cache(tiny_root, tmp_path, method, grid, reduction):
    cache = make_trainer(tiny_root, tmp_path, method).cache.cache
    assert (cache.grid, cache.reduction) == (grid, reduction)


def test_first_visit_is_fresh_then_served_from_the_cache(tiny_root, tmp_path, monkeypatch):
    trainer = make_trainer(tiny_root, tmp_path, "hybridmix_v3")
    images, targets, indices = next(iter(trainer.data.train_loader))
    calls = []
    import pretrain.engine.saliency_cache as module

    real = module.gradient_saliency
    monkeypatch.setattr(module, "gradient_saliency", lambda m, x, *a: calls.append(len(x)) or real(m, x, *a))
    trainer.train_step(images, targets, indices, indices, mixing=True)  # nothing cached yet: all fresh
    assert calls == [BATCH] and trainer.cache.counts.tolist() == [BATCH, BATCH]
    assert torch.isfinite(trainer.cache.cache.maps[indices]).any(1).all()  # the backward stored them
    assert trainer.cache.cache.stored[indices.numpy()].all()  # and the host knows it without reading the device
    trainer.train_step(images, targets, indices, indices, mixing=True)  # the same samples again: served, no pass
    assert calls == [BATCH] and trainer.cache.counts.tolist() == [BATCH, 2 * BATCH]


def test_agreement_counts_match_a_per_pair_reference(monkeypatch):
    """cache_agreement: hits against a fresh pass, and the chance level summed over every other
    sample of the probe batch (a plain loop over pairs as the reference)."""
    from pretrain.engine import saliency_cache as sc
    from pretrain.mixing.geometry import cell_kernel, extreme_cells

    b, src, out, grid, n = 7, 32, 16, 16, 4
    g = torch.Generator().manual_seed(3)
    cache = SaliencyCache(20, (grid, grid), "max", torch.device("cpu"), min_coverage=0.0)
    idx = torch.tensor([5, 2, 11, 0, 19, 7, 3])
    cache.store(idx, torch.rand(b, grid * grid, generator=g), idx.numpy())
    p = random_params(b, src, seed=4, scale=(0.3, 1.0))
    geo = source_cells(p.top, p.left, p.height, p.width, p.flip, (src, src), (out, out), (grid, grid), "cpu")
    served, _ = cache.lookup(idx, geo)
    fresh = served.clone()
    fresh[:3] = torch.rand(3, out, out, generator=g)  # three samples whose fresh pass differs
    monkeypatch.setattr(sc, "gradient_saliency", lambda model, images, targets, reduction: fresh)
    counts = sc.cache_agreement(cache, None, torch.zeros(b, 3, out, out), torch.zeros(b, dtype=torch.long), idx, geo, n)
    kernel = cell_kernel(out, out, n)
    target = extreme_cells(fresh, kernel)[0]
    hits = sum(bool((extreme_cells(served[i : i + 1], kernel)[0][0] == target[i]).all()) for i in range(b))
    chance = pairs = 0
    for i in range(b):
        one = CropGeometry(geo.cells[i : i + 1])
        for j in range(b):
            if j != i:
                other, _ = cache.lookup(idx[j : j + 1], one)
                chance += bool((extreme_cells(other, kernel)[0][0] == target[i]).all())
                pairs += 1
    assert counts.tolist() == [hits, b, chance, pairs]
    assert hits >= b - 3
