"""Figures of what the mixing methods do (the paper's Figures 2, 3 and 6).

One PNG grid per image: the original, its gradient saliency map, the pooled n x n map with the
most (red) and least (blue) salient cells, the SalfMix result with P_m (red) and P_l (blue), and
each HybridMix version.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from pretrain.mixing import MIXERS, make_mixer
from pretrain.mixing.geometry import cell_kernel, extreme_cells, paste_patches, pool_cells
from pretrain.mixing.hybridmix import HybridMix
from pretrain.mixing.salfmix import check_n, patch_side, position_draws, salfmix_positions
from pretrain.mixing.saliency import gradient_saliency
from salfmix.runs.files import atomic_write

# The torchvision ImageNet statistics, used by every shipped pretraining config.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
HYBRIDS = tuple(name for name, cls in MIXERS.items() if issubclass(cls, HybridMix))


def normalize(images_uint8: np.ndarray) -> Tensor:
    """uint8 [N, H, W, 3] -> normalised float [N, 3, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def to_display(image: Tensor) -> np.ndarray:
    """Normalised [3, H, W] -> float [H, W, 3] in [0, 1] for matplotlib."""
    x = image.detach().cpu() * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def mixing_panels(
    model: torch.nn.Module, images: Tensor, targets: Tensor, n: int, r: float, seed: int = 0
) -> dict[str, object]:
    """Everything one figure shows, for a batch: saliency, pooled maps, cells, patches, results."""
    _, _, h, w = images.shape
    n, o = check_n(n, min(h, w)), patch_side(r, h, w)
    saliency = gradient_saliency(model, images, targets)  # [B, H, W]
    kernel = cell_kernel(h, w, n)
    top_max, size_max, top_min, size_min = extreme_cells(saliency, kernel)
    generator = torch.Generator().manual_seed(seed)
    p_m, p_l = salfmix_positions(saliency, n, o, position_draws(images.shape[0], generator))
    panels: dict[str, object] = {
        "saliency": saliency,
        "pooled": pool_cells(saliency, kernel),
        "cell_max": top_max,
        "cell_min": top_min,
        "size_max": size_max,
        "size_min": size_min,
        "cell": kernel,
        "p_m": p_m,
        "p_l": p_l,
        "o": o,
        "salfmix": paste_patches(images, images, p_m, p_l, (o, o)),
    }
    for name in HYBRIDS:
        mixer = make_mixer(name, n=n, r=r, generator=torch.Generator().manual_seed(seed))
        panels[name] = mixer(images, targets, saliency=saliency)
    return panels


def _box(ax, yx, size, colour: str) -> None:
    import matplotlib.patches as mpatches

    y, x = (int(v) for v in yx)
    ax.add_patch(mpatches.Rectangle((x - 0.5, y - 0.5), size[1], size[0], fill=False, edgecolor=colour, linewidth=2))


def save_figures(
    images: Tensor, targets: Tensor, panels: dict[str, object], out_dir: str, names: Sequence[str] | None = None
) -> list[str]:
    """Write one PNG grid per image into ``out_dir``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    _, _, h, w = images.shape
    cell, o = panels["cell"], panels["o"]
    paths = []
    for i in range(images.shape[0]):
        fig, axes = plt.subplots(1, 4 + len(HYBRIDS), figsize=(2.2 * (4 + len(HYBRIDS)), 2.6))
        axes[0].imshow(to_display(images[i]))
        axes[0].set_title(f"original (y={int(targets[i])})")
        axes[1].imshow(panels["saliency"][i].cpu().numpy(), cmap="inferno")
        axes[1].set_title("saliency M")
        pooled = panels["pooled"][i].cpu().numpy()
        # Each cell's mean painted over its pixels (remainder cells are cropped to the image).
        axes[2].imshow(np.kron(pooled, np.ones(cell))[:h, :w], cmap="inferno")
        _box(axes[2], panels["cell_max"][i], panels["size_max"][i].tolist(), "red")
        _box(axes[2], panels["cell_min"][i], panels["size_min"][i].tolist(), "deepskyblue")
        axes[2].set_title("pooled: R_m, R_l")
        axes[3].imshow(to_display(panels["salfmix"][i]))
        _box(axes[3], panels["p_m"][i], (o, o), "red")
        _box(axes[3], panels["p_l"][i], (o, o), "deepskyblue")
        axes[3].set_title("SalfMix: P_m -> P_l")
        for ax, name in zip(axes[4:], HYBRIDS):
            result = panels[name]
            ax.imshow(to_display(result.images[i]))
            ax.set_title(
                f"{name.replace('hybridmix_', 'HybridMix ')}\nlam={float(result.lam[i]):.2f} "
                f"({int(result.targets_a[i])}/{int(result.targets_b[i])})",
                fontsize=8,
            )
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        stem = names[i] if names is not None else f"image_{i:03d}"
        path = os.path.join(out_dir, f"{stem}.png")
        try:
            atomic_write(path, lambda f, fig=fig: fig.savefig(f, format="png", dpi=110))
        finally:
            plt.close(fig)
        paths.append(path)
    return paths
