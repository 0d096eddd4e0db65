"""The CIFAR ResNets of He et al., CVPR 2016 (https://arxiv.org/abs/1512.03385), section 4.2.

A 3x3 convolution to 16 channels, three stages of ``n`` basic blocks (conv3x3-BN-ReLU-conv3x3-BN,
add, ReLU) with 16 / 32 / 64 channels and strides 1 / 2 / 2, global average pooling and a linear
classifier: depth 6 n + 2. ResNet-20 (n = 3) has 0.27 M parameters with 10 classes, as the
paper's Table 6 states. Shortcuts are the paper's option A, which it uses for CIFAR: identity,
and where a stage halves the resolution and doubles the width, the input subsampled with stride
2 and zero channels appended (no parameters). Convolutions use He initialisation, as the paper.
The input side is free: 32 px ends at 8 x 8, Fashion-MNIST's 28 px at 7 x 7.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus an option-A shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.extra = planes - in_planes
        if self.extra < 0:
            raise ValueError(f"BasicBlock {in_planes} -> {planes} channels: option-A shortcuts only widen")

    def shortcut(self, x: Tensor) -> Tensor:
        """Identity, subsampled with the block's stride and zero-padded to its width (option A)."""
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth ``6 n + 2``: ``[B, 3, H, W]`` -> logits ``[B, num_classes]``."""

    def __init__(self, depth: int, num_classes: int) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth {depth}: expected 6 n + 2 (20, 32, 44, 56, 110)")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, 16, n, 1)
        self.layer2 = self._make_layer(16, 32, n, 2)
        self.layer3 = self._make_layer(32, 64, n, 2)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _make_layer(in_planes: int, planes: int, num: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(num - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def resnet20(num_classes: int) -> CifarResNet:
    """ResNet-20 (n = 3, 0.27 M parameters at 10 classes)."""
    return CifarResNet(20, num_classes)
