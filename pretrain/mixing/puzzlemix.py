"""PuzzleMix (Kim et al., ICML 2020, https://arxiv.org/abs/2009.06962).

Faithful to the official code (snu-mllab/PuzzleMix, ``mixup.py``: ``mixup_graph``,
``graphcut_multi``, ``neigh_penalty``, ``mask_transport``, ``transport_image``, ``cost_matrix``;
``main.py``: the saliency pass and the CIFAR-100 recipe of the README):

- Per batch: one ``block_num`` uniform over {2, 4, 8, 16} (official ``2**randint(1, 5)``), one
  ``lam ~ Beta(alpha, alpha)``, partner = a random permutation.
- Unary term: the RMS gradient saliency average-pooled to ``block_num x block_num`` blocks and
  normalised to sum 1 per sample; the partner's is the permuted one (one backward serves both).
- Data smoothness (``neigh_penalty``): mean |difference| over channels of the un-normalised
  images avg-pooled by ``neigh_size``, across each block boundary, for the four source pairs,
  scaled by ``beta * gamma`` with ``beta = beta / block_num / 16``; folded into the unaries and
  the edge weights as the official code does. Label smoothness ``beta``; label prior
  ``eta * -log(Binomial(n_labels - 1, lam)) / block_num**2``; ``n_labels`` mask levels
  ``1 - l / (n_labels - 1)``; costs scaled by ``1000 * block_num**2`` and truncated to int32.
- Alpha-beta swap graph cut with ``gco.cut_grid_graph(..., algorithm="swap")`` (the official call;
  ``cut_grid_graph_simple`` fixes every edge weight to 1 and cannot carry the data term). It
  runs per sample on the CPU, which is inherent to graph cuts (pyGCO is a C++ solver on numpy
  arrays); everything else (pooling, penalties, costs, transport, upsampling, mixing, lam) is
  vectorised over the batch on the images' device.
- Transport (``transport=True``, ``t_size``, ``t_eps``): the official greedy row/column
  resolution run ``t_block_num`` times, cost ``t_eps * C - saliency_i * [mask_j > 0]`` with
  ``C`` the squared grid distance / (n - 1)^2, for x1 under the mask and x2 under ``1 - mask``;
  a destination no block wins stays 0, as in the official code. For ``t_size < block_size`` the
  mask is upsampled (nearest) to ``side // t_size`` and the saliency re-pooled at ``t_size``.
- Mixed image ``mask * x1' + (1 - mask) * x2'`` (mask upsampled nearest); ``lam[i]`` = mean of
  sample i's mask = the official per-sample ``ratio``, so ``mix_loss`` has the loss form
  ``lam * CE(a) + (1 - lam) * CE(b)``.

Defaults are the official CIFAR-100 recipe (README; ``main.py`` defaults otherwise):
``alpha=1.0 (mixup_alpha), beta=1.2, gamma=0.5, eta=0.2, neigh_size=4, n_labels=3,
transport=True, t_eps=0.8, t_size=4``. The Tiny-ImageNet recipe uses ``t_size=-1`` (transport at
the graph-cut resolution) and ``clean_lam=1``.

Deviations from the official code, and why:

- Energy scale handed to gco. The official call passes int32 unaries and edge weights with a
  float32 label-cost matrix, which switches pyGCO to its "float energy" mode: unaries x 1e5,
  edges x 1e3, label costs x 100, each cast to int32. The unary product is done in int32 and
  wraps around once a block's cost exceeds 21474 (e.g. block_num 16 with a block holding > 8% of
  the saliency), giving garbage costs. Here every term is int32 with unaries x 100, edges x 1,
  label costs x 100: exactly the official energy / 1000 (same solution) without the overflow.
- Transport ties go to the first index (``torch.argmin``); the official ``min(dim)[1]`` on CUDA
  does not specify its tie order. Each round is computed from the blocks' picks rather than
  dense [B, m, m] plan matrices, and the plan is applied with a gather rather than a matmul (at
  most one block wins a destination): the same plan and values, checked against a literal
  per-sample loop of the official algorithm in the tests.
- A sample whose pooled saliency sums to 0 gets zero unaries (the official code divides by 0).
- The transport cost matrix is built for any grid size (official: a dict for 2, 4, 8, 16).
- ``mean``/``std`` are arguments (official: hard-coded per dataset in ``main.py``): the penalty is
  computed on ``x * std + mean``; ``None`` means the images are already in [0, 1] pixel scale.
  Only ``std`` matters (the mean cancels in the differences up to rounding).
- Square images whose side every ``block_num`` divides (and ``neigh_size`` / ``t_size`` divide
  the block side) are required, with a ValueError; the official code uses the width only and
  fails or mis-shapes otherwise.
- Random draws go through the mixer's generator (official: ``np.random``); same distributions.
- ``prob`` (skip the batch with probability ``1 - prob``) comes from PairMixer; the official code
  mixes every batch (``prob=1``, the default).

Official features left to the training loop (out of scope for a mixer), with their defaults:

- Adversarial input perturbation (``adv_p=0.0``, ``adv_eps=10.0``; 0.1 / 0.15 in the adversarial
  recipes): FGSM noise from the saliency pass's gradient, added to x1 / x2 before transport.
- Clean-loss term (``clean_lam=0`` on CIFAR, 1 in the Tiny-ImageNet recipe): with it the saliency
  pass runs in train mode and ``2 * clean_lam / num_classes * CE(clean)`` is added to the loss.
- The training loss: official ``BCE(softmax(logits), lam * onehot(a) + (1 - lam) * onehot(b))``;
  this project's ``mix_loss`` is the CE form (``MixResult`` carries lam either way).
- The multi-process pool for the graph cuts (``--mp 8``): cuts run sequentially here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pretrain.mixing.base import Draws, MixResult, PairMixer, check_pair, check_saliency, integers, register, unmixed
from pretrain.mixing.base import beta as sample_beta
from pretrain.mixing.geometry import channels_last

BLOCK_NUMS = (2, 4, 8, 16)
N_LABELS = (2, 3, 4)
PRIOR_EPS = 1e-8  # official graphcut_multi eps
UNARY_SCALE = 100  # pyGCO's float mode scales unaries by 1e5 and edges by 1e3: official / 1000
LABEL_COST_SCALE = 100  # pyGCO's float-mode scale of the label-cost matrix


def grid_sizes(side: int, block_num: int, neigh_size: int, t_size: int) -> tuple[int, int, int]:
    """``(block_size, neigh, t)``: the block side and the effective neighbour / transport sizes
    (official ``min(size, block_size)``; ``t = -1`` stays -1)."""
    block_size = side // block_num
    return block_size, min(neigh_size, block_size), min(t_size, block_size)


def check_geometry(h: int, w: int, block_nums: Sequence[int], neigh_size: int, t_size: int) -> None:
    """Raise ValueError unless every block_num tiles the square image exactly."""
    if h != w:
        raise ValueError(f"images: PuzzleMix needs square images, got H={h}, W={w}")
    for n in block_nums:
        if w % n:
            raise ValueError(f"images: side {w} is not divisible by block_num {n} (block_nums={tuple(block_nums)})")
    for n in block_nums:
        block, neigh, t = grid_sizes(w, n, neigh_size, t_size)
        if block % neigh:
            raise ValueError(f"neigh_size: {neigh} must divide the block side {block} (side {w}, block_num {n})")
        if t != -1 and block % t:
            raise ValueError(f"t_size: {t} must divide the block side {block} (side {w}, block_num {n})")


def pooled_unary(saliency: Tensor, size: int) -> Tensor:
    """Saliency [B, H, W] average-pooled by ``size`` and normalised to sum 1 per sample."""
    pooled = F.avg_pool2d(saliency.float().unsqueeze(1), size).squeeze(1)
    total = pooled.flatten(1).sum(1)
    total = torch.where(total > 0, total, torch.ones_like(total))  # all-zero map: zero unaries
    return pooled / total.view(-1, 1, 1)


def cost_matrix(n: int, device: torch.device) -> Tensor:
    """[n^2, n^2] squared grid distance between blocks (row-major) / (n - 1)^2 (official)."""
    idx = torch.arange(n * n, device=device)
    r, c = idx // n, idx % n
    dist = (r.view(-1, 1) - r.view(1, -1)) ** 2 + (c.view(-1, 1) - c.view(1, -1)) ** 2
    return dist.float() / float((n - 1) ** 2)


def neighbor_penalty(top: Tensor, bottom: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Official ``neigh_penalty``: mean |difference| across block boundaries.

    ``top`` [B, C, h, w] supplies the upper / left side of each boundary, ``bottom`` the lower /
    right side; ``k`` pooled pixels per block. Returns vertical-edge ``[B, n-1, n]`` and
    horizontal-edge ``[B, n, n-1]`` penalties.
    """
    pv = (top[:, :, :-1, :] - bottom[:, :, 1:, :])[:, :, k - 1 :: k, :]
    ph = (top[:, :, :, :-1] - bottom[:, :, :, 1:])[:, :, :, k - 1 :: k]
    pv = F.avg_pool2d(pv.abs().mean(1, keepdim=True), kernel_size=(1, k)).squeeze(1)
    ph = F.avg_pool2d(ph.abs().mean(1, keepdim=True), kernel_size=(k, 1)).squeeze(1)
    return pv, ph


def graph_terms(
    x1: Tensor,
    x2: Tensor,
    u1: Tensor,
    u2: Tensor,
    block_num: int,
    beta: float,
    gamma: float,
    neigh_size: int,
    mean: Tensor,
    std: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The official unaries and edge terms after the submodular rewrite, vectorised.

    ``u1``, ``u2`` [B, n, n]: normalised block saliency of x1 and x2; ``beta`` is the official
    normalised ``beta / block_num / 16``. Returns ``cost_x1`` (cost of taking a block from x1:
    x2's saliency is lost; official ``unary2``), ``cost_x2`` (official ``unary1``), and the edge
    terms ``pw_v`` [B, n-1, n], ``pw_h`` [B, n, n-1].
    """
    block, neigh, _ = grid_sizes(x1.shape[-1], block_num, neigh_size, -1)
    k = block // neigh
    pools = [F.avg_pool2d(x.float() * std + mean, neigh) for x in (x2, x1)]  # index 0 = x2, 1 = x1
    scale = beta * gamma
    v, h = {}, {}
    for a in (0, 1):
        for b in (0, 1):
            pv, ph = neighbor_penalty(pools[a], pools[b], k)
            v[a, b], h[a, b] = scale * pv, scale * ph
    c1, c2 = u2.clone(), u1.clone()
    c1[:, :-1, :] += (v[1, 0] + v[1, 1]) / 2.0
    c2[:, :-1, :] += (v[0, 1] + v[0, 0]) / 2.0
    c1[:, 1:, :] += (v[0, 1] + v[1, 1]) / 2.0
    c2[:, 1:, :] += (v[1, 0] + v[0, 0]) / 2.0
    c1[:, :, :-1] += (h[1, 0] + h[1, 1]) / 2.0
    c2[:, :, :-1] += (h[0, 1] + h[0, 0]) / 2.0
    c1[:, :, 1:] += (h[0, 1] + h[1, 1]) / 2.0
    c2[:, :, 1:] += (h[1, 0] + h[0, 0]) / 2.0
    pw_v = (v[1, 0] + v[0, 1] - v[1, 1] - v[0, 0]) / 2
    pw_h = (h[1, 0] + h[0, 1] - h[1, 1] - h[0, 0]) / 2
    return c1, c2, pw_v, pw_h


def label_prior(lam: float, n_labels: int) -> np.ndarray:
    """Official ``-log`` prior of each label (label l keeps ``1 - l/(n-1)`` of x1), float64."""
    a, e = lam, PRIOR_EPS
    if n_labels == 2:
        p = [a + e, 1 - a + e]
    elif n_labels == 3:
        p = [a**2 + e, 2 * a * (1 - a) + e, (1 - a) ** 2 + e]
    elif n_labels == 4:
        p = [a**3 + e, 3 * a**2 * (1 - a) + e, 3 * a * (1 - a) ** 2 + e, (1 - a) ** 3 + e]
    else:
        raise ValueError(f"n_labels: expected one of {N_LABELS}, got {n_labels}")
    return -np.log(np.array(p))


def graphcut_costs(
    cost_x1: Tensor,
    cost_x2: Tensor,
    pw_v: Tensor,
    pw_h: Tensor,
    lam: float,
    beta: float,
    eta: float,
    n_labels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """int32 inputs of ``gco.cut_grid_graph``: unaries [B, n, n, L], vertical / horizontal edge
    weights, and the [L, L] label costs; official ``graphcut_multi`` arithmetic (float32,
    truncation), in the integer scale described in the module docstring."""
    n = cost_x1.shape[-1]
    large = float(1000 * n**2)
    prior = eta * label_prior(lam, n_labels) / n**2
    weights = np.linspace(0, 1, n_labels)  # label l takes l / (L - 1) of each block from x2
    unary = (
        torch.stack(
            [(float(1 - t) * cost_x1 + float(t) * cost_x2 + float(prior[i])) * large for i, t in enumerate(weights)],
            dim=-1,
        )
        .to(torch.int32)
        .to(torch.int64)
        * UNARY_SCALE
    )
    edge_v = ((pw_v + beta) * large).to(torch.int32)
    edge_h = ((pw_h + beta) * large).to(torch.int32)
    lab = np.arange(n_labels)
    smooth = ((lab[:, None] - lab[None, :]) ** 2 / (n_labels - 1) ** 2).astype(np.float32)
    smooth = (smooth * LABEL_COST_SCALE).astype(np.int32)
    to_np = lambda t: t.cpu().numpy().astype(np.int32)  # noqa: E731
    return to_np(unary), to_np(edge_v), to_np(edge_h), smooth


def solve_graphcut(unary: np.ndarray, edge_v: np.ndarray, edge_h: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """Labels [B, n, n] from one alpha-beta swap per sample (CPU; gco has no batched solver)."""
    try:  # imported here: the rest of the mixing library must not need the C extension
        import gco
    except ImportError as err:
        raise ImportError(f"PuzzleMix needs the graph-cut package gco (pip install gco-wrapper): {err}") from None
    b, n = unary.shape[:2]
    labels = np.empty((b, n, n), dtype=np.int64)
    for i in range(b):
        labels[i] = gco.cut_grid_graph(unary[i], smooth, edge_v[i], edge_h[i], algorithm="swap").reshape(n, n)
    return labels


def transport_plan(mask: Tensor, unary: Tensor, eps: float) -> Tensor:
    """Official ``mask_transport``, batched; returns ``src`` [B, m] (m = n^2, row-major blocks):
    the block moved to destination j, or -1 when no block wins j (official
    ``plan_win[b, i, j] = 1`` iff ``src[b, j] == i``). ``mask`` [B, 1, n, n], ``unary`` [B, n, n].

    Each of the n rounds: every block i picks its cheapest destination (``argmin`` of its cost
    row); each destination keeps the first-index argmin of ``plan * cost`` over its column, where
    rows that did not pick it count as 0, so a destination whose pickers all cost > 0 has no
    winner (official quirk, kept); every loser pays +1 on the destination it lost. Computed from
    the picks in O(B m) per round instead of dense [B, m, m] plans.
    """
    b, n = mask.shape[0], mask.shape[-1]
    m, dev = n * n, mask.device
    z = (mask > 0).float().reshape(b, 1, m)
    # eps * C - u_i * z_j in one pass (u * z is exact: z is 0 or 1)
    cost = torch.addcmul(eps * cost_matrix(n, dev), unary.float().reshape(b, m, 1), z, value=-1.0)
    rows = torch.arange(m, device=dev).expand(b, m)
    src = torch.full((b, m), -1, dtype=torch.long, device=dev)
    for it in range(n):
        pick = cost.argmin(-1)  # [B, m]: each block's cheapest destination
        val = cost.gather(2, pick.unsqueeze(-1)).squeeze(-1)  # each row's cost at its pick
        col_min = torch.full((b, m), float("inf"), device=dev).scatter_reduce(1, pick, val, "amin")
        first = torch.where(val == col_min.gather(1, pick), rows, m)
        first = torch.full((b, m), m, device=dev).scatter_reduce(1, pick, first, "amin")  # m: unpicked
        # First row that did not pick column j: 0 unless j is row 0's pick, else the run length of
        # row 0's pick from the top (m: every row picked j).
        run = (pick == pick[:, :1]).long().cumprod(1).sum(1, keepdim=True)
        unpicked = torch.where(rows == pick[:, :1], run, 0)
        win = (first < m) & ((unpicked == m) | (col_min < 0) | ((col_min == 0) & (first < unpicked)))
        src = torch.where(win, first, -1)
        if it == n - 1:
            break
        lost = src.gather(1, pick) != rows  # [B, m]
        cost.scatter_add_(2, pick.unsqueeze(-1), lost.float().unsqueeze(-1))
    return src


def transport_blocks(images: Tensor, src: Tensor, size: int) -> Tensor:
    """Official ``transport_image``: destination block j gets block ``src[:, j]``, or 0 if -1."""
    b, c, h, w = images.shape
    n, m = h // size, src.shape[-1]
    blocks = images.reshape(b, c, n, size, n, size).permute(0, 1, 2, 4, 3, 5).reshape(b, c, m, size * size)
    index = src.clamp(min=0).view(b, 1, m, 1).expand(b, c, m, size * size)
    filled = (src >= 0).view(b, 1, m, 1)
    moved = torch.where(filled, blocks.gather(2, index), torch.zeros((), dtype=images.dtype, device=images.device))
    return moved.reshape(b, c, n, n, size, size).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


@torch.no_grad()
def puzzle_mix(
    x1: Tensor,
    x2: Tensor,
    s1: Tensor,
    s2: Tensor,
    lam: float,
    block_num: int,
    *,
    beta: float = 1.2,
    gamma: float = 0.5,
    eta: float = 0.2,
    neigh_size: int = 4,
    n_labels: int = 3,
    transport: bool = True,
    t_eps: float = 0.8,
    t_size: int = 4,
    mean: Tensor | None = None,
    std: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Official ``mixup_graph`` for pairs ``(x1[i], x2[i])`` with saliency ``s1``, ``s2`` [B, H, W].

    Returns the mixed images and the mask [B, 1, H, W] (fraction of each pixel from x1).
    ``mean``/``std`` broadcast to [1, C, 1, 1] (``None``: images already in pixel scale).
    """
    w, dtype = x1.shape[-1], x1.dtype
    block, _, t = grid_sizes(w, block_num, neigh_size, t_size)
    dev = x1.device
    mean = torch.zeros((), device=dev) if mean is None else mean.to(dev, torch.float32)
    std = torch.ones((), device=dev) if std is None else std.to(dev, torch.float32)
    beta_n = beta / block_num / 16  # official normalisation
    s1, s2 = s1.to(dev), s2.to(dev)
    u1, u2 = pooled_unary(s1, block), pooled_unary(s2, block)
    terms = graph_terms(x1, x2, u1, u2, block_num, beta_n, gamma, neigh_size, mean, std)
    costs = graphcut_costs(*terms, lam, beta_n, eta, n_labels)
    labels = torch.from_numpy(solve_graphcut(*costs)).to(dev)
    mask = (1.0 - labels.double() / (n_labels - 1)).float().unsqueeze(1)  # [B, 1, n, n], official rounding
    if transport:
        if t == -1 or t == block:
            t, tu1, tu2 = block, u1, u2
        else:  # finer transport grid
            mask = F.interpolate(mask, size=w // t, mode="nearest")
            tu1, tu2 = pooled_unary(s1, t), pooled_unary(s2, t)
        x1 = transport_blocks(x1, transport_plan(mask, tu1, t_eps), t)
        x2 = transport_blocks(x2, transport_plan(1 - mask, tu2, t_eps), t)
    mask = F.interpolate(mask, size=x1.shape[-2:], mode="nearest")
    mixed = mask * x1 + (1 - mask) * x2
    return mixed.to(dtype), mask


def _channel_stat(name: str, value, positive: bool) -> Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 0 or not torch.isfinite(t).all() or (positive and not (t > 0).all()):
        raise ValueError(f"{name}: expected finite per-channel values{' > 0' if positive else ''}, got {value}")
    return t.view(1, -1, 1, 1)


@register("puzzlemix")
class PuzzleMix(PairMixer):
    """PuzzleMix with the official CIFAR-100 defaults (see the module docstring).

    ``mean``/``std``: the per-channel normalisation of the batch (the data term is computed on
    ``x * std + mean`` as officially); ``None`` if the images are in [0, 1] pixel scale. The
    official values: CIFAR-100 mean (129.3, 124.1, 112.4) / 255, std (68.2, 65.4, 70.4) / 255;
    CIFAR-10 (125.3, 123.0, 113.9) / 255, (63.0, 62.1, 66.7) / 255; Tiny-ImageNet 0.5, 0.5.
    """

    composite = "graph_cut"
    needs_saliency = True
    saliency_reduction = "rms"
    runs_on_host = True  # the graph cut (gco) solves each pair on the host
    # Its smoothness term works on un-normalised pixels: the data's normalisation comes along.
    config_args = (
        "alpha",
        "beta",
        "gamma",
        "eta",
        "neigh_size",
        "n_labels",
        "transport",
        "t_eps",
        "t_size",
        "block_nums",
        "prob",
    )
    config_keys = {"mean": "AUG.MEAN", "std": "AUG.STD"}

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.2,
        gamma: float = 0.5,
        eta: float = 0.2,
        neigh_size: int = 4,
        n_labels: int = 3,
        transport: bool = True,
        t_eps: float = 0.8,
        t_size: int = 4,
        block_nums: Sequence[int] = BLOCK_NUMS,
        mean: None | float | Sequence[float] = None,
        std: None | float | Sequence[float] = None,
        prob: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(prob=prob, **kwargs)
        if not float(alpha) > 0:
            raise ValueError(f"alpha: expected a Beta(alpha, alpha) parameter > 0, got {alpha}")
        for name, val in (("beta", beta), ("gamma", gamma), ("eta", eta), ("t_eps", t_eps)):
            if not float(val) >= 0:
                raise ValueError(f"{name}: expected a weight >= 0, got {val}")
        if isinstance(neigh_size, bool) or int(neigh_size) != neigh_size or neigh_size < 1:
            raise ValueError(f"neigh_size: expected an integer >= 1, got {neigh_size}")
        if n_labels not in N_LABELS:
            raise ValueError(f"n_labels: expected one of {N_LABELS} (official priors), got {n_labels}")
        if isinstance(t_size, bool) or int(t_size) != t_size or not (t_size == -1 or t_size >= 1):
            raise ValueError(f"t_size: expected -1 (graph-cut resolution) or an integer >= 1, got {t_size}")
        nums = tuple(block_nums)
        if not nums or any(isinstance(n, bool) or int(n) != n or n < 2 for n in nums):
            raise ValueError(f"block_nums: expected a non-empty sequence of integers >= 2, got {block_nums}")
        self.alpha, self.beta, self.gamma, self.eta = float(alpha), float(beta), float(gamma), float(eta)
        self.neigh_size, self.n_labels, self.t_size = int(neigh_size), int(n_labels), int(t_size)
        self.transport, self.t_eps, self.block_nums = bool(transport), float(t_eps), tuple(int(n) for n in nums)
        self.mean, self.std = _channel_stat("mean", mean, False), _channel_stat("std", std, True)

    def check_input(self, h: int, w: int) -> None:
        check_geometry(h, w, self.block_nums, self.neigh_size, self.t_size)

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        # One saliency tensor serves both images: s1 = saliency, s2 = saliency[index].
        if draws["skip"]:
            return unmixed(images, targets)
        index = draws["index"]
        return self.apply_pair(
            images, targets, images[index], targets[index], saliency[index], draws["pair"], s1=saliency
        )

    def pair_draws(self, shape: tuple[int, ...]) -> Draws:
        # Host numbers: the graph cut runs on the host anyway (runs_on_host).
        block = int(integers(len(self.block_nums), 1, self.generator))
        return {"block_num": self.block_nums[block], "lam": float(sample_beta(self.alpha, 1, self.generator)[0])}

    def mix_pair(
        self,
        x1: Tensor,
        y1: Tensor,
        x2: Tensor,
        y2: Tensor,
        s2: Tensor | None = None,
        *,
        s1: Tensor | None = None,
    ) -> MixResult:
        """Mix ``x1[i]`` with ``x2[i]``; needs both saliency maps ``s1`` and ``s2`` [B, H, W]."""
        check_pair(x1, y1, x2, y2)
        return self.apply_pair(x1, y1, x2, y2, s2, self.pair_draws(tuple(x1.shape)), s1=s1)

    def apply_pair(
        self,
        x1: Tensor,
        y1: Tensor,
        x2: Tensor,
        y2: Tensor,
        s2: Tensor | None,
        draws: Draws,
        *,
        s1: Tensor | None = None,
    ) -> MixResult:
        if s1 is None or s2 is None:
            raise ValueError("PuzzleMix.mix_pair needs the saliency of both images: s1= and s2= [B, H, W]")
        check_saliency(s1, x1)
        check_saliency(s2, x2)
        _, c, h, w = x1.shape
        check_geometry(h, w, self.block_nums, self.neigh_size, self.t_size)
        for name, stat in (("mean", self.mean), ("std", self.std)):
            if stat is not None and stat.numel() not in (1, c):
                raise ValueError(f"{name}: {stat.numel()} values for {c} channels")
        block_num, lam = draws["block_num"], draws["lam"]
        mixed, mask = puzzle_mix(
            x1,
            x2,
            s1,
            s2,
            lam,
            block_num,
            beta=self.beta,
            gamma=self.gamma,
            eta=self.eta,
            neigh_size=self.neigh_size,
            n_labels=self.n_labels,
            transport=self.transport,
            t_eps=self.t_eps,
            t_size=self.t_size,
            mean=self.mean,
            std=self.std,
        )
        if channels_last(x1):  # the transport's block gathers come out contiguous: keep the input's layout
            mixed = mixed.contiguous(memory_format=torch.channels_last)
        return MixResult(mixed, y1, y2, mask.flatten(1).mean(1))
