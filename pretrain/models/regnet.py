"""RegNetX-200MF (Radosavovic et al., CVPR 2020, https://arxiv.org/abs/2003.13678), CIFAR style.

The "RegNet-200M" of the paper's Table 6 (2.3 M parameters on CIFAR-100), which the paper takes
from the public repository yhhhli/RegNet-Pytorch (its ``CIFAR10/models``). What this module
matches there:

- The RegNetX-200MF design-space parameters: w_a = 36.44, w_0 = 24, w_m = 2.49, depth 13,
  group width 8, bottleneck ratio 1, widths quantised to multiples of 8. The quantised linear
  rule gives four stages of widths 24 / 56 / 152 / 368 and depths 1 / 1 / 4 / 7 (the group
  widths need no adjustment: every width is a multiple of 8).
- No squeeze-and-excitation (RegNetX, not RegNetY).
- The CIFAR adaptation: the stem is a 3 x 3 stride-1 convolution to 32 channels + BN + ReLU, and
  the stage strides are 1, 2, 2, 2 (32 px input ends at 4 x 4), where the ImageNet network has a
  stride-2 stem and strides 2, 2, 2, 2.
- The X block: 1 x 1 conv-BN-ReLU, 3 x 3 grouped conv (stride on it) -BN-ReLU, 1 x 1 conv-BN,
  added to the shortcut (1 x 1 strided conv + BN where the shape changes, else the identity),
  then ReLU; the head is global average pooling and a linear classifier.
- The initialisation: convolutions N(0, 2 / fan_out), the last BN of each block's residual
  branch with gamma = 0, the other BN gamma = 1, the classifier N(0, 0.01) with zero bias.

Deviations: the repository hard-codes 10 classes; here the class count is a parameter (100 on
CIFAR-100 gives 2.35 M parameters, the paper's 2.3 M). The network is built by this module from
the parameters above, not by the repository's code. The training recipe is in
configs/pretrain/Base-CIFAR100-RegNet200M.yaml.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# RegNetX-200MF (the RegNet paper's Table / pycls model zoo), as the repository defines it.
REGNETX_200MF = {"w_a": 36.44, "w_0": 24, "w_m": 2.49, "depth": 13, "group_width": 8, "bottleneck": 1.0}
STEM_WIDTH = 32


def regnet_stages(w_a: float, w_0: int, w_m: float, depth: int, q: int = 8) -> tuple[list[int], list[int]]:
    """Per-stage (widths, depths) of the quantised linear rule: block j has the continuous width
    w_0 + w_a j, snapped to w_0 w_m^k (k rounded in log space) and then to a multiple of q;
    consecutive blocks of equal width form a stage."""
    if not (w_a >= 0 and w_0 > 0 and w_m > 1 and w_0 % q == 0):
        raise ValueError(f"RegNet: expected w_a >= 0, w_0 > 0 divisible by {q}, w_m > 1; got {w_a}, {w_0}, {w_m}")
    widths, depths = [], []
    for j in range(depth):
        k = round(math.log((w_0 + w_a * j) / w_0) / math.log(w_m))
        w = int(round(w_0 * w_m**k / q) * q)
        if widths and widths[-1] == w:
            depths[-1] += 1
        else:
            widths.append(w)
            depths.append(1)
    return widths, depths


def compatible_widths(widths: list[int], group_width: int, bottleneck: float) -> tuple[list[int], list[int]]:
    """Widths and group widths made compatible: a group no wider than the bottleneck, and the
    bottleneck width a multiple of the group width (the RegNet paper's adjustment)."""
    inner = [int(w * bottleneck) for w in widths]
    groups = [min(group_width, b) for b in inner]
    inner = [int(round(b / g) * g) for b, g in zip(inner, groups)]
    return [int(b / bottleneck) for b in inner], groups


class XBlock(nn.Module):
    """RegNetX residual bottleneck: [B, Cin, H, W] -> [B, Cout, H/s, W/s]."""

    def __init__(self, in_planes: int, planes: int, stride: int, bottleneck: float, group_width: int) -> None:
        super().__init__()
        inner = int(round(planes * bottleneck))
        self.branch = nn.Sequential(
            nn.Conv2d(in_planes, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, inner, 3, stride, 1, groups=inner // group_width, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return torch.relu(shortcut + self.branch(x))


class RegNetCifar(nn.Module):
    """[B, 3, H, W] -> logits [B, num_classes]; a stride-1 stem, stage strides 1, 2, 2, 2."""

    def __init__(
        self,
        widths: list[int],
        depths: list[int],
        group_widths: list[int],
        bottleneck: float,
        num_classes: int,
        stem_width: int = STEM_WIDTH,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True)
        )
        stages, in_planes = [], stem_width
        for i, (w, d, g) in enumerate(zip(widths, depths, group_widths)):
            blocks = [
                XBlock(in_planes if b == 0 else w, w, (1 if i == 0 else 2) if b == 0 else 1, bottleneck, g)
                for b in range(d)
            ]
            stages.append(nn.Sequential(*blocks))
            in_planes = w
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, XBlock):  # each block starts as its shortcut (zero-init last BN)
                nn.init.zeros_(m.branch[-1].weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stages(self.stem(x))
        return self.fc(out.mean((2, 3)))


def regnetx_200m(num_classes: int) -> RegNetCifar:
    """RegNetX-200MF in the CIFAR layout of yhhhli/RegNet-Pytorch (the paper's Table 6)."""
    p = REGNETX_200MF
    widths, depths = regnet_stages(p["w_a"], p["w_0"], p["w_m"], p["depth"])
    widths, groups = compatible_widths(widths, p["group_width"], p["bottleneck"])
    return RegNetCifar(widths, depths, groups, p["bottleneck"], num_classes)
