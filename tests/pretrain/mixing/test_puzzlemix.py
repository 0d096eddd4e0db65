"""PuzzleMix: shapes, lam, determinism, saliency behaviour, transport and graph cut vs references."""

import gco
import numpy as np
import pytest
import torch

from pretrain.mixing.base import beta as sample_beta
from pretrain.mixing.base import mix_loss
from pretrain.mixing.puzzlemix import (
    BLOCK_NUMS,
    PuzzleMix,
    cost_matrix,
    graph_terms,
    graphcut_costs,
    pooled_unary,
    puzzle_mix,
    solve_graphcut,
    transport_blocks,
    transport_plan,
)

CPU = torch.device("cpu")


def _pair(b=6, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.rand(b, 3, s, s, generator=g), torch.rand(b, 3, s, s, generator=g)
    s1, s2 = torch.rand(b, s, s, generator=g), torch.rand(b, s, s, generator=g)
    return x1, x2, s1, s2


def _draws(mixer):
    """The (block_num, lam) the mixer's next mix_pair will draw, from a copy of its generator."""
    g = torch.Generator()
    g.set_state(mixer.generator.get_state())
    block_num = mixer.block_nums[int(torch.randint(len(mixer.block_nums), (1,), generator=g))]
    return block_num, float(sample_beta(mixer.alpha, 1, g)[0])


def test_shapes_targets_and_partner():
    # Constant images (value = index) so each output pixel tells where it came from.
    images = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 32, 32).contiguous()
    targets = torch.arange(8)
    saliency = torch.rand(8, 32, 32, generator=torch.Generator().manual_seed(1))
    for transport in (False, True):
        out = PuzzleMix(transport=transport, seed=3)(images, targets, saliency=saliency)
        assert out.images.shape == images.shape and out.images.dtype == images.dtype
        assert out.lam.shape == (8,) and out.lam.dtype == torch.float32
        assert torch.equal(out.targets_a, targets)
        assert torch.equal(out.targets_b.sort().values, targets)  # a permutation of the batch
        for i in range(8):
            a, p = float(i), float(out.targets_b[i])
            allowed = {0.0, a, p, (a + p) / 2, a / 2, p / 2}  # 0, a / 2, p / 2: unfilled transport blocks
            assert set(out.images[i].unique().tolist()) <= allowed


def test_with_model_and_loss(model, batch):
    images, targets = batch
    out = PuzzleMix(seed=0)(images, targets, model=model)
    loss = mix_loss(model(out.images), out)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("block_num", BLOCK_NUMS)
def test_lam_is_mask_fraction_without_transport(block_num):
    _, _, s1, s2 = _pair(6)
    x1, x2 = torch.zeros(6, 3, 32, 32), torch.ones(6, 3, 32, 32)
    mixer = PuzzleMix(transport=False, block_nums=(block_num,), seed=block_num)
    for _ in range(3):
        out = mixer.mix_pair(x1, torch.zeros(6, dtype=torch.long), x2, torch.ones(6, dtype=torch.long), s2, s1=s1)
        assert ((out.lam >= 0) & (out.lam <= 1)).all()
        torch.testing.assert_close(out.images.mean(dim=(1, 2, 3)), 1 - out.lam)


@pytest.mark.parametrize("t_size", [4, -1])
def test_lam_is_mask_ratio_with_transport(t_size):
    _, _, s1, s2 = _pair(6, seed=2)
    x1, x2 = torch.zeros(6, 3, 32, 32), torch.ones(6, 3, 32, 32)
    y = torch.zeros(6, dtype=torch.long)
    mixer = PuzzleMix(t_size=t_size, seed=5)
    for _ in range(4):
        block_num, lam0 = _draws(mixer)
        mixed, mask = puzzle_mix(x1, x2, s1, s2, lam0, block_num, t_size=t_size)
        out = mixer.mix_pair(x1, y, x2, y, s2, s1=s1)
        assert torch.equal(out.images, mixed)
        torch.testing.assert_close(out.lam, mask.flatten(1).mean(1))
        assert set(mask.unique().tolist()) <= {0.0, 0.5, 1.0}
        # Each pixel is (1 - mask) where x2's transported block exists, else 0 (no winner).
        assert ((mixed == 1 - mask) | (mixed == 0)).all()


def test_seeded_determinism():
    x1, x2, s1, s2 = _pair(8, seed=4)
    images, targets = x1, torch.arange(8)
    a = PuzzleMix(generator=torch.Generator().manual_seed(0))
    b = PuzzleMix(generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        ra, rb = a(images, targets, saliency=s1), b(images, targets, saliency=s1)
        assert torch.equal(ra.images, rb.images) and torch.equal(ra.lam, rb.lam)
        assert torch.equal(ra.targets_b, rb.targets_b)


@pytest.mark.parametrize("transport", [False, True])
@pytest.mark.parametrize("block_num", BLOCK_NUMS)
def test_strong_saliency_region_kept_from_its_source(block_num, transport):
    b = 4
    x1, x2, _, _ = _pair(b, seed=6)
    s1, s2 = torch.full((b, 32, 32), 1e-3), torch.full((b, 32, 32), 1e-3)
    s1[:, :16, :16] = 1.0  # x1's object: top-left quadrant (aligned with every block grid)
    s2[:, 16:, 16:] = 1.0  # x2's object: bottom-right quadrant
    y = torch.zeros(b, dtype=torch.long)
    mixer = PuzzleMix(transport=transport, block_nums=(block_num,), seed=block_num)
    for _ in range(3):
        out = mixer.mix_pair(x1, y, x2, y, s2, s1=s1)
        assert torch.equal(out.images[:, :, :16, :16], x1[:, :, :16, :16])
        assert torch.equal(out.images[:, :, 16:, 16:], x2[:, :, 16:, 16:])


def test_single_dominant_block_is_kept():
    # One 2x2 block holds most of x1's saliency at block_num 16. The official gco call (float
    # label costs -> pyGCO scales int32 unaries by 1e5) wraps around here and mixes that block.
    b = 4
    x1, x2, _, _ = _pair(b, seed=7)
    s1, s2 = torch.full((b, 32, 32), 1e-3), torch.full((b, 32, 32), 1e-3)
    s1[:, 4:6, 4:6], s2[:, 20:22, 20:22] = 1.0, 1.0
    _, mask = puzzle_mix(x1, x2, s1, s2, 0.5, 16, transport=False)
    assert (mask[:, 0, 4:6, 4:6] == 1).all() and (mask[:, 0, 20:22, 20:22] == 0).all()


# ------------------------------------------------------------------------------------------
# Transport against a plain per-sample loop of the official algorithm.
# ------------------------------------------------------------------------------------------
def _reference_plan(mask, unary, eps):
    """Official mask_transport for one sample, literally (dense plan, numpy first-index argmin)."""
    n = mask.shape[-1]
    m = n * n
    C = np.zeros((m, m), np.float32)
    for i in range(m):
        for j in range(m):
            C[i, j] = (i // n - j // n) ** 2 + (i % n - j % n) ** 2
    C = C / (n - 1) ** 2
    z = (mask.reshape(m) > 0).astype(np.float32)
    cost = np.float32(eps) * C - unary.reshape(m, 1) * z.reshape(1, m)
    for _ in range(n):
        plan = np.zeros_like(cost)
        plan[np.arange(m), cost.argmin(1)] = 1
        win = np.zeros_like(cost)
        win[(plan * cost).argmin(0), np.arange(m)] = 1
        win *= plan
        cost += (1 - win) * plan
    return win


def _reference_transport(img, plan, size):
    c, h, w = img.shape
    n = h // size
    out = np.zeros_like(img)
    for j in range(n * n):
        for i in range(n * n):
            if plan[i, j]:
                r, q = divmod(i, n)
                rd, qd = divmod(j, n)
                out[:, rd * size : (rd + 1) * size, qd * size : (qd + 1) * size] = img[
                    :, r * size : (r + 1) * size, q * size : (q + 1) * size
                ]
    return out


def test_transport_matches_reference_loop():
    g = torch.Generator().manual_seed(0)
    for trial in range(12):
        n, b = (2, 4, 8, 16)[trial % 4], 4
        mask = torch.randint(3, (b, 1, n, n), generator=g) / 2.0
        if trial % 3 == 0:
            mask = torch.ones(b, 1, n, n)  # every destination open
        unary = torch.rand(b, n, n, generator=g) ** (1 + trial % 5)
        if trial % 4 == 1:
            unary = torch.ones(b, n, n)  # all ties
        unary = unary / unary.flatten(1).sum(1).view(-1, 1, 1)
        src = transport_plan(mask, unary, 0.8)
        size = 32 // n
        images = torch.rand(b, 3, 32, 32, generator=g)
        moved = transport_blocks(images, src, size)
        for k in range(b):
            plan = _reference_plan(mask[k].numpy(), unary[k].numpy(), 0.8)
            assert (plan.sum(0) <= 1).all()
            ref_src = np.where(plan.sum(0) > 0, plan.argmax(0), -1)
            np.testing.assert_array_equal(src[k].numpy(), ref_src)
            np.testing.assert_array_equal(moved[k].numpy(), _reference_transport(images[k].numpy(), plan, size))


def test_cost_matrix():
    C = cost_matrix(4, CPU)
    assert C.shape == (16, 16) and C[0, 15] == 2.0 and C[0, 1] == pytest.approx(1 / 9) and (C.diag() == 0).all()


# ------------------------------------------------------------------------------------------
# Graph terms and graph cut against per-sample references and direct gco calls.
# ------------------------------------------------------------------------------------------
def _reference_terms(x1, x2, u1, u2, n, beta, gamma, neigh):
    """Official unary/pairwise construction for one sample, with explicit boundary loops."""
    w = x1.shape[-1]
    block = w // n
    neigh = min(neigh, block)
    k = block // neigh
    c, s = x1.shape[0], w // neigh
    pools = [x.reshape(c, s, neigh, s, neigh).mean(axis=(2, 4)) for x in (x2, x1)]

    def pen(a, b):  # a on top/left, b on bottom/right; mean |diff| over channels and the k pixels
        pv, ph = np.zeros((n - 1, n), np.float32), np.zeros((n, n - 1), np.float32)
        for r in range(n - 1):
            row = (r + 1) * k - 1
            for c in range(n):
                pv[r, c] = np.abs(a[:, row, c * k : (c + 1) * k] - b[:, row + 1, c * k : (c + 1) * k]).mean()
        for r in range(n):
            for c in range(n - 1):
                col = (c + 1) * k - 1
                ph[r, c] = np.abs(a[:, r * k : (r + 1) * k, col] - b[:, r * k : (r + 1) * k, col + 1]).mean()
        return beta * gamma * pv, beta * gamma * ph

    v = {(a, b): pen(pools[a], pools[b])[0] for a in (0, 1) for b in (0, 1)}
    h = {(a, b): pen(pools[a], pools[b])[1] for a in (0, 1) for b in (0, 1)}
    c1, c2 = u2.copy(), u1.copy()  # cost of taking the block from x1 / from x2
    for r in range(n):
        for c in range(n):
            # each incident edge adds half the penalty summed over the neighbour's two sources
            if r < n - 1:
                c1[r, c] += (v[1, 0][r, c] + v[1, 1][r, c]) / 2
                c2[r, c] += (v[0, 1][r, c] + v[0, 0][r, c]) / 2
            if r > 0:
                c1[r, c] += (v[0, 1][r - 1, c] + v[1, 1][r - 1, c]) / 2
                c2[r, c] += (v[1, 0][r - 1, c] + v[0, 0][r - 1, c]) / 2
            if c < n - 1:
                c1[r, c] += (h[1, 0][r, c] + h[1, 1][r, c]) / 2
                c2[r, c] += (h[0, 1][r, c] + h[0, 0][r, c]) / 2
            if c > 0:
                c1[r, c] += (h[0, 1][r, c - 1] + h[1, 1][r, c - 1]) / 2
                c2[r, c] += (h[1, 0][r, c - 1] + h[0, 0][r, c - 1]) / 2
    pw_v = (v[1, 0] + v[0, 1] - v[1, 1] - v[0, 0]) / 2
    pw_h = (h[1, 0] + h[0, 1] - h[1, 1] - h[0, 0]) / 2
    return c1, c2, pw_v, pw_h


@pytest.mark.parametrize("block_num", BLOCK_NUMS)
def test_graph_terms_match_reference_loop(block_num):
    x1, x2, s1, s2 = _pair(3, seed=8)
    block = 32 // block_num
    u1, u2 = pooled_unary(s1, block), pooled_unary(s2, block)
    beta = 1.2 / block_num / 16
    got = graph_terms(x1, x2, u1, u2, block_num, beta, 0.5, 4, torch.zeros(()), torch.ones(()))
    for k in range(3):
        ref = _reference_terms(x1[k].numpy(), x2[k].numpy(), u1[k].numpy(), u2[k].numpy(), block_num, beta, 0.5, 4)
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g[k].numpy(), r, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("n_labels", [2, 3, 4])
@pytest.mark.parametrize("block_num", BLOCK_NUMS)
def test_graphcut_matches_direct_gco_call(block_num, n_labels):
    x1, x2, s1, s2 = _pair(4, seed=9)
    lam, eta, beta = 0.3, 0.2, 1.2 / block_num / 16
    block = 32 // block_num
    terms = graph_terms(
        x1,
        x2,
        pooled_unary(s1, block),
        pooled_unary(s2, block),
        block_num,
        beta,
        0.5,
        4,
        torch.zeros(()),
        torch.ones(()),
    )
    unary, edge_v, edge_h, smooth = graphcut_costs(*terms, lam, beta, eta, n_labels)
    labels = solve_graphcut(unary, edge_v, edge_h, smooth)
    _, mask = puzzle_mix(x1, x2, s1, s2, lam, block_num, transport=False, n_labels=n_labels)
    c1, c2, pv, ph = (t.numpy() for t in terms)
    large = np.float32(1000 * block_num**2)
    prior = {
        2: [lam, 1 - lam],
        3: [lam**2, 2 * lam * (1 - lam), (1 - lam) ** 2],
        4: [lam**3, 3 * lam**2 * (1 - lam), 3 * lam * (1 - lam) ** 2, (1 - lam) ** 3],
    }[n_labels]
    prior = eta * -np.log(np.array(prior) + 1e-8) / block_num**2
    for k in range(4):
        # official graphcut_multi: float32 arithmetic (numpy 1.x scalar casting), int32 truncation
        ref_unary = np.stack(
            [
                (np.float32(1 - t) * c1[k] + np.float32(t) * c2[k] + np.float32(prior[i])) * large
                for i, t in enumerate(np.linspace(0, 1, n_labels))
            ],
            axis=-1,
        ).astype(np.int32)
        ref_v = ((pv[k] + np.float32(beta)) * large).astype(np.int32)
        ref_h = ((ph[k] + np.float32(beta)) * large).astype(np.int32)
        np.testing.assert_array_equal(unary[k], ref_unary * 100)
        np.testing.assert_array_equal(edge_v[k], ref_v)
        np.testing.assert_array_equal(edge_h[k], ref_h)
        label_cost = np.array(
            [[(i - j) ** 2 / (n_labels - 1) ** 2 for j in range(n_labels)] for i in range(n_labels)], np.float32
        )
        assert ref_unary.max() < 2**31 // 100000  # no int32 wrap in pyGCO's float mode here
        direct = gco.cut_grid_graph(ref_unary, label_cost, ref_v, ref_h, algorithm="swap")  # the official call
        np.testing.assert_array_equal(labels[k].reshape(-1), direct)
        ref_mask = 1.0 - direct.reshape(block_num, block_num) / (n_labels - 1)
        up = np.kron(ref_mask, np.ones((block, block)))
        np.testing.assert_array_equal(mask[k, 0].numpy(), up.astype(np.float32))


# ------------------------------------------------------------------------------------------
# Bad arguments.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"beta": -1.0}, "beta"),
        ({"gamma": -0.5}, "gamma"),
        ({"eta": float("nan")}, "eta"),
        ({"t_eps": -1.0}, "t_eps"),
        ({"neigh_size": 0}, "neigh_size"),
        ({"n_labels": 5}, "n_labels"),
        ({"t_size": 0}, "t_size"),
        ({"t_size": 2.5}, "t_size"),
        ({"block_nums": ()}, "block_nums"),
        ({"block_nums": (1, 2)}, "block_nums"),
        ({"std": [0.2, 0.0, 0.2]}, "std"),
        ({"prob": 1.5}, "prob"),
    ],
)
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PuzzleMix(**kwargs)


def test_bad_inputs(make_batch):
    images, targets = make_batch(4, 32, 32)
    sal = torch.rand(4, 32, 32)
    mixer = PuzzleMix(seed=0)
    with pytest.raises(ValueError, match="4-D"):
        mixer(images[0], targets, saliency=sal)
    with pytest.raises(ValueError, match="saliency"):
        mixer(images, targets, saliency=sal[:, :16])
    with pytest.raises(ValueError, match="saliency map"):
        mixer(images, targets)  # neither saliency nor model
    with pytest.raises(ValueError, match="s1="):
        mixer.mix_pair(images, targets, images, targets, sal)
    with pytest.raises(ValueError, match="x2: expected the shape of x1"):
        mixer.mix_pair(images, targets, images[:, :, :16], targets, sal, s1=sal)
    with pytest.raises(ValueError, match="square"):
        mixer(images[:, :, :16], targets, saliency=sal[:, :16])
    with pytest.raises(ValueError, match="divisible"):
        mixer(images[:, :, :30, :30], targets, saliency=sal[:, :30, :30])
    with pytest.raises(ValueError, match="neigh_size"):
        PuzzleMix(neigh_size=3, seed=0)(images, targets, saliency=sal)
    with pytest.raises(ValueError, match="std"):
        PuzzleMix(std=[0.2, 0.2], seed=0)(images, targets, saliency=sal)
