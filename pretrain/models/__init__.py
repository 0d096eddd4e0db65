"""Classification models: torchvision's ResNet-50 (for detection transfer), the CIFAR-style
PreActResNet-18/50/101 of the paper's classification tables, PyramidNet-110 and RegNetX-200MF (Table 6)."""

from collections.abc import Callable

import torchvision
from torch import nn

from pretrain.models.preact_resnet import preactresnet18, preactresnet50, preactresnet101
from pretrain.models.pyramidnet import pyramidnet110, pyramidnet110_a48
from pretrain.models.regnet import regnetx_200m
from pretrain.models.resnet_cifar import resnet20
from pretrain.models.weights import load_resnet50, read_state_dict


def resnet50(num_classes: int) -> nn.Module:
    """torchvision's ResNet-50 (ImageNet stem), so the Detectron2 converter applies to it."""
    return torchvision.models.resnet50(num_classes=num_classes)


ARCHS: dict[str, Callable[[int], nn.Module]] = {
    "resnet50": resnet50,
    "preactresnet18": preactresnet18,
    "preactresnet50": preactresnet50,
    "preactresnet101": preactresnet101,
    "pyramidnet110": pyramidnet110,
    "pyramidnet110_a48": pyramidnet110_a48,
    "regnetx_200m": regnetx_200m,
    "resnet20": resnet20,
}


def build_arch(name: str, num_classes: int) -> nn.Module:
    """The classifier ``name`` with ``num_classes`` outputs; ValueError lists the valid names."""
    if name not in ARCHS:
        raise ValueError(f"MODEL.ARCH: unknown architecture {name!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[name](num_classes)


__all__ = ["ARCHS", "build_arch", "load_resnet50", "read_state_dict"]
