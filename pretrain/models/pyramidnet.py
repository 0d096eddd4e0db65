"""PyramidNet (Han et al., CVPR 2017, https://arxiv.org/abs/1610.02915), CIFAR style.

The network of the paper's Table 6, "PyramidNet-110 (alpha = 64), 1.7 M parameters", as the
CutMix code builds it. Those two figures disagree: with alpha = 64 the network has 2.6 M
parameters (100 classes); 1.7 M is alpha = 48 in the PyramidNet paper (whose alpha = 84 / 3.8 M
this module also reproduces). ``pyramidnet110`` follows the stated alpha, ``pyramidnet110_a48``
the stated size. The network: basic blocks BN-conv3x3-BN-ReLU-conv3x3-BN, the width growing by
alpha / (3 n) channels per block from 16 (rounded per block), n = (depth - 2) / 6 blocks per
stage with strides 1, 2, 2; the shortcut is the identity (2 x 2 average pooling when the block
strides) with the extra channels zero-padded; a final BN-ReLU, global average pooling and a
linear classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PyramidBlock(nn.Module):
    """BN-conv3x3(stride)-BN-ReLU-conv3x3-BN; zero-padded identity shortcut: [B, Cin, H, W] -> [B, Cout, H/s, W/s]."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.bn1(x))
        out = self.bn3(self.conv2(torch.relu(self.bn2(out))))
        shortcut = F.avg_pool2d(x, 2, 2, ceil_mode=True) if self.stride != 1 else x
        extra = out.shape[1] - shortcut.shape[1]
        if extra:  # the new channels get no shortcut (zero padding, no parameters)
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, extra))
        return out + shortcut


class PyramidNet(nn.Module):
    """[B, 3, H, W] -> logits [B, num_classes]."""

    def __init__(self, depth: int, alpha: float, num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"PyramidNet depth {depth}: expected 6 n + 2 (basic blocks)")
        n = (depth - 2) // 6
        step = alpha / (3 * n)
        width, in_planes = 16.0, 16
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages = []
        for stage_stride in (1, 2, 2):
            blocks = []
            for i in range(n):
                width += step
                planes = int(round(width))
                blocks.append(PyramidBlock(in_planes, planes, stage_stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn_final = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.relu(self.bn_final(out))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def pyramidnet110(num_classes: int) -> PyramidNet:
    """PyramidNet-110 with alpha = 64 (the paper's Table 6)."""
    return PyramidNet(110, 64, num_classes)


def pyramidnet110_a48(num_classes: int) -> PyramidNet:
    """PyramidNet-110 with alpha = 48: the 1.7 M-parameter network of the PyramidNet paper."""
    return PyramidNet(110, 48, num_classes)
