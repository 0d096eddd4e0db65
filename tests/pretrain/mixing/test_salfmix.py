"""SalfMix: the batched implementation against a plain per-sample Algorithm 1."""

import pytest
import torch

from pretrain.mixing.geometry import cell_kernel, extreme_cells, pool_cells
from pretrain.mixing.salfmix import SalfMix, SalfMixNoPool, SalfMixRandom, random_salfmix, salfmix


def draws(seed, b):
    """The uniform draws salfmix makes from a generator seeded with ``seed``."""
    return torch.rand(4 * b, generator=torch.Generator().manual_seed(seed)).view(b, 4)


@pytest.mark.parametrize(
    "h,w,n,r",
    [
        (32, 32, 4, 0.3),
        (64, 64, 8, 0.3),
        (32, 32, 4, 0.1),
        (32, 32, 4, 0.7),
        (32, 32, 4, 1.0),
        (30, 30, 4, 0.5),
        (20, 28, 3, 0.25),
        (16, 16, 16, 0.2),
        (16, 16, 1, 0.4),
        (28, 28, 8, 0.3),
        (28, 28, 3, 0.1),
        (23, 17, 5, 0.2),
    ],
)
def test_matches_per_sample_reference(reference_salfmix, h, w, n, r):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(6, 3, h, w, generator=g)
    saliency = torch.rand(6, h, w, generator=g)
    fast = salfmix(images, saliency, n, r, torch.Generator().manual_seed(7))
    ref = reference_salfmix(images, saliency, n, r, draws(7, 6))
    assert torch.equal(fast, ref)


def test_nopool_matches_pixel_level_reference(reference_salfmix):
    g = torch.Generator().manual_seed(2)
    images, saliency = torch.randn(5, 3, 24, 24, generator=g), torch.rand(5, 24, 24, generator=g)
    fast = salfmix(images, saliency, 1, 0.3, torch.Generator().manual_seed(3), pool=False)
    assert torch.equal(fast, reference_salfmix(images, saliency, 1, 0.3, draws(3, 5), pool=False))


def test_nopool_is_pixel_level_on_non_square_images(reference_salfmix):
    g = torch.Generator().manual_seed(5)
    images, saliency = torch.randn(4, 3, 12, 24, generator=g), torch.rand(4, 12, 24, generator=g)
    fast = salfmix(images, saliency, 1, 0.25, torch.Generator().manual_seed(6), pool=False)
    assert torch.equal(fast, reference_salfmix(images, saliency, 1, 0.25, draws(6, 4), pool=False))


@pytest.mark.parametrize("n,kernel", [(8, 3), (3, 9)])  # 28 px: a 1-pixel remainder row and column
def test_peak_in_the_remainder_is_found(n, kernel):
    images = torch.arange(28 * 28.0).view(1, 1, 28, 28).repeat(1, 3, 1, 1)
    saliency = torch.zeros(1, 28, 28)
    saliency[0, 27, 27] = 1.0  # the only salient pixel lies in the remainder cell
    saliency[0, :kernel, :kernel] = -1.0
    cells = pool_cells(saliency, cell_kernel(28, 28, n))
    assert cells.shape[-2:] == (28 // kernel + 1, 28 // kernel + 1)
    top_max, size_max, _, _ = extreme_cells(saliency, cell_kernel(28, 28, n))
    assert top_max.tolist() == [[28 // kernel * kernel] * 2] and size_max.tolist() == [[1, 1]]
    for seed in range(10):  # P_m always contains the peak pixel
        out = salfmix(images, saliency, n, 0.3, torch.Generator().manual_seed(seed))
        assert (out[0, 0] == 27 * 28 + 27).sum() == 2  # once in place (or overwritten) and once pasted
        moved = out[0, 0][out[0, 0] != images[0, 0]]
        assert (moved == 27 * 28 + 27).any()


def test_copies_most_salient_patch_over_least_salient():
    images = torch.arange(64.0).view(1, 1, 8, 8).repeat(1, 3, 1, 1)
    saliency = torch.zeros(1, 8, 8)
    saliency[0, :2, :2] = 5.0  # top-left cell most salient
    saliency[0, 6:, 6:] = -1.0  # bottom-right cell least salient
    out = salfmix(images, saliency, 4, 0.25, torch.Generator().manual_seed(0))  # o = 2 = cell
    assert torch.equal(out[0, :, 6:, 6:], images[0, :, :2, :2])
    changed = (out != images).any(dim=1)[0]
    assert changed[6:, 6:].all() and changed.sum() == 4  # nothing outside P_l moved


def test_patch_contains_its_cell_and_stays_inside():
    # With o > cell, P_m must contain the argmax cell: check the pasted values came from there.
    g = torch.Generator().manual_seed(4)
    for _ in range(20):
        images = torch.rand(1, 1, 32, 32, generator=g) + torch.arange(1024.0).view(1, 1, 32, 32) * 10
        saliency = torch.zeros(1, 32, 32)
        cy, cx = [int(v) for v in torch.randint(4, (2,), generator=g) * 8]
        saliency[0, cy : cy + 8, cx : cx + 8] = 1.0
        saliency[0, 0:8, 24:32] -= 1.0 if (cy, cx) != (0, 24) else 0.0
        out = salfmix(images.expand(1, 3, 32, 32).contiguous(), saliency, 4, 0.5, g)
        moved = (out[0, 0] != images[0, 0]).nonzero()
        src_idx = (out[0, 0][moved[:, 0], moved[:, 1]] / 10).floor().long()  # original flat index
        ys, xs = src_idx // 32, src_idx % 32
        assert ys.min() <= cy and ys.max() >= cy + 7 and xs.min() <= cx and xs.max() >= cx + 7


def test_returns_new_tensor_and_keeps_input():
    images, saliency = torch.randn(2, 3, 16, 16), torch.rand(2, 16, 16)
    before = images.clone()
    out = salfmix(images, saliency, 4, 0.3)
    assert out is not images and torch.equal(images, before)


def test_seeded_determinism(make_batch, model):
    images, targets = make_batch()
    a = SalfMix(n=4, r=0.3, generator=torch.Generator().manual_seed(5))(images, targets, model=model)
    b = SalfMix(n=4, r=0.3, generator=torch.Generator().manual_seed(5))(images, targets, model=model)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.lam, torch.ones(8)) and torch.equal(a.targets_a, targets)


def test_random_variant_moves_one_square_patch():
    images = torch.randn(4, 3, 20, 20)
    out = random_salfmix(images, 0.3, torch.Generator().manual_seed(0))  # o = 6
    for i in range(4):
        changed = (out[i] != images[i]).any(dim=0)
        if changed.any():
            rows, cols = changed.nonzero().unbind(1)
            assert rows.max() - rows.min() < 6 and cols.max() - cols.min() < 6


def test_variants_need_saliency_or_not(batch, model):
    images, targets = batch
    SalfMixRandom(r=0.3)(images, targets)  # no model needed
    SalfMixNoPool(r=0.3)(images, targets, model=model)
    with pytest.raises(ValueError, match="needs a saliency map"):
        SalfMix()(images, targets)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"n": 4, "r": 0.0}, "r: expected a patch ratio in \\(0, 1\\]"),
        ({"n": 4, "r": 1.5}, "r: expected"),
        ({"n": 0, "r": 0.3}, "n: expected an integer grid size"),
        ({"n": 33, "r": 0.3}, "n: expected an integer grid size in \\[1, 32\\]"),
        ({"n": 2.5, "r": 0.3}, "n: expected"),
        ({"n": 4, "r": 0.01}, "patch side floor"),
    ],
)
def test_bad_arguments(kwargs, message):
    images, saliency = torch.randn(2, 3, 32, 32), torch.rand(2, 32, 32)
    with pytest.raises(ValueError, match=message):
        salfmix(images, saliency, **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="images: expected a 4-D tensor"):
        salfmix(torch.randn(3, 32, 32), torch.rand(3, 32, 32), 4, 0.3)
    with pytest.raises(ValueError, match="saliency: expected shape"):
        salfmix(torch.randn(2, 3, 32, 32), torch.rand(2, 16, 16), 4, 0.3)
    with pytest.raises(ValueError, match="r: expected"):
        SalfMix(r=2.0)
