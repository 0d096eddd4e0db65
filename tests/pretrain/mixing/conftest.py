"""Fixtures for the mixing tests: a tiny CNN and seeded batches."""

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """Conv-BN-ReLU-pool-linear: enough for gradients that depend on the input."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def _make_batch(b: int = 8, h: int = 32, w: int = 32, seed: int = 0, num_classes: int = 10):
    """Random normalised-looking images [B, 3, H, W] and labels [B]."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, h, w, generator=g)
    targets = torch.randint(num_classes, (b,), generator=g)
    return images, targets


@pytest.fixture
def make_batch():
    """The batch factory ``make_batch(b, h, w, seed, num_classes)``."""
    return _make_batch


@pytest.fixture
def batch():
    return _make_batch()


def reference_salfmix(images, saliency, n, r, u, pool=True):
    """Algorithm 1 image by image with Python loops; ``u`` [B, 4] are the uniform draws."""
    out = images.clone()
    b, _, h, w = images.shape
    o = int(w * r)
    kh, kw = (h // n, w // n) if pool else (1, 1)
    for i in range(b):
        cells = {}  # (top, left) -> (mean, (height, width)); the remainder rows/columns form smaller cells
        for cy in range(0, h, kh):
            for cx in range(0, w, kw):
                block = saliency[i, cy : cy + kh, cx : cx + kw].float()
                cells[(cy, cx)] = (float(block.mean()), tuple(block.shape))
        keys = list(cells)  # row-major, so max()/min() keep the first of equal cells
        best = max(keys, key=lambda k: cells[k][0])
        worst = min(keys, key=lambda k: cells[k][0])
        starts = []
        for (cy, cx), (uy, ux) in ((best, u[i, :2]), (worst, u[i, 2:])):
            pos = []
            ch, cw = cells[(cy, cx)][1]
            for c, size, length, uu in ((cy, ch, h, uy), (cx, cw, w, ux)):
                if o >= size:  # the patch contains the cell
                    valid = [s for s in range(length - o + 1) if s <= c and c + size <= s + o]
                else:  # the patch lies inside the cell
                    valid = [s for s in range(length - o + 1) if c <= s and s + o <= c + size]
                pos.append(valid[min(int(float(uu) * len(valid)), len(valid) - 1)])
            starts.append(pos)
        (ym, xm), (yl, xl) = starts
        out[i, :, yl : yl + o, xl : xl + o] = images[i, :, ym : ym + o, xm : xm + o]
    return out


@pytest.fixture(name="reference_salfmix")
def _reference_salfmix_fixture():
    """The per-sample Algorithm 1 reference, for tests of SalfMix and HybridMix."""
    return reference_salfmix
