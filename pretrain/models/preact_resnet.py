"""Pre-activation ResNets (He et al., ECCV 2016, https://arxiv.org/abs/1603.05027), CIFAR style.

The variant the SalfMix paper (Tables 4-7) and the mixing baselines it compares against train:
a 3x3 stride-1 stem, four stages of 64/128/256/512 base channels with strides 1, 2, 2, 2, a
final BN-ReLU, global average pooling and a linear classifier. PreActResNet-18 uses basic
blocks [2, 2, 2, 2] (11 M parameters), -50 and -101 bottlenecks [3, 4, 6, 3] and [3, 4, 23, 3]
(24 M and 43 M with 100 classes, as the paper states).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity (or 1x1 conv) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes * self.expansion:
            self.shortcut = nn.Conv2d(in_planes, planes * self.expansion, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        # The projection shortcut takes the pre-activated input, as in the paper's Fig. 1(b).
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: 1x1 -> 3x3 (stride) -> 1x1 with 4x expansion."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes * self.expansion:
            self.shortcut = nn.Conv2d(in_planes, planes * self.expansion, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """CIFAR-style pre-activation ResNet: [B, 3, H, W] -> logits [B, num_classes]."""

    def __init__(self, block: type[PreActBlock | PreActBottleneck], num_blocks: list[int], num_classes: int) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], 2)
        self.bn = nn.BatchNorm2d(512 * block.expansion)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, num: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (num - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = torch.relu(self.bn(out))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def preactresnet18(num_classes: int) -> PreActResNet:
    """PreActResNet-18."""
    return PreActResNet(PreActBlock, [2, 2, 2, 2], num_classes)


def preactresnet50(num_classes: int) -> PreActResNet:
    """PreActResNet-50."""
    return PreActResNet(PreActBottleneck, [3, 4, 6, 3], num_classes)


def preactresnet101(num_classes: int) -> PreActResNet:
    """PreActResNet-101."""
    return PreActResNet(PreActBottleneck, [3, 4, 23, 3], num_classes)
