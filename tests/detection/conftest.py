"""Fixtures of the detection tests: the tools as modules, a generated VOC set, checkpoints."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import detection  # noqa: F401  (before Detectron2)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def load_detection_tool(load_tool) -> Callable[[str], object]:
    """``load_detection_tool("name")``: the module behind ``tools/name.py`` (tests/conftest.py)."""
    return load_tool


@pytest.fixture(scope="session")
def voc_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A generated VOC-format set (3 classes, 128x96 images); returns its VOC2007 folder."""
    from detection.voc_demo import make_voc_demo

    return make_voc_demo(str(tmp_path_factory.mktemp("voc_demo")), num_trainval=16, num_test=8, seed=0)


@pytest.fixture(scope="session")
def torchvision_r50_state() -> dict[str, torch.Tensor]:
    """A random torchvision ResNet-50 state dict with non-trivial BN statistics."""
    import torchvision

    gen = torch.Generator().manual_seed(0)
    model = torchvision.models.resnet50(num_classes=10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(0.2 * torch.rand(n, generator=gen) - 0.1)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def converted_r50(tmp_path_factory: pytest.TempPathFactory, torchvision_r50_state: dict[str, torch.Tensor]) -> str:
    """``torchvision_r50_state`` converted to a Detectron2 pickle; returns its path."""
    from detection.convert import convert_state_dict, write_detectron2_pickle

    path = os.path.join(str(tmp_path_factory.mktemp("weights")), "r50.pkl")
    write_detectron2_pickle(convert_state_dict(torchvision_r50_state), path)
    return path
