"""RegNetX-200MF (Table 6): the design-space widths, the paper's 2.3 M, the CIFAR strides, the init."""

import pytest
import torch
from torchvision.models.regnet import BlockParams, RegNet

from pretrain.models import ARCHS, build_arch
from pretrain.models.regnet import compatible_widths, regnet_stages


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered_under_a_regnet_200_name() -> None:
    assert [n for n in ARCHS if "regnet" in n and "200" in n] == ["regnetx_200m"]


def test_stages_of_regnetx_200mf() -> None:
    # The RegNet paper's RegNetX-200MF: widths 24/56/152/368, depths 1/1/4/7, group width 8.
    widths, depths = regnet_stages(36.44, 24, 2.49, 13)
    assert (widths, depths) == ([24, 56, 152, 368], [1, 1, 4, 7])
    assert compatible_widths(widths, 8, 1.0) == (widths, [8, 8, 8, 8])
    net = build_arch("regnetx_200m", 100)
    built = [[(b.branch[0].out_channels, b.branch[3].groups) for b in stage] for stage in net.stages]
    assert built == [[(w, w // 8)] * d for w, d in zip(widths, depths)]


def test_compatible_widths_round_the_bottleneck_to_the_group_width() -> None:
    assert compatible_widths([21, 99], 8, 1.0) == ([24, 96], [8, 8])
    assert compatible_widths([6], 8, 1.0) == ([6], [6])  # a group never wider than the layer
    assert compatible_widths([100], 8, 0.5) == ([96], [8])


def test_parameters_match_the_paper_and_torchvision_s_regnet() -> None:
    net = build_arch("regnetx_200m", 100)
    assert 2.1e6 <= _params(net) <= 2.5e6  # the paper's Table 6: 2.3 M at 100 classes
    # torchvision's RegNet built from the same design-space parameters has the same tensors; its
    # stem is stride 2 (ImageNet), which changes no shape.
    ref = RegNet(BlockParams.from_init_params(depth=13, w_0=24, w_a=36.44, w_m=2.49, group_width=8), num_classes=100)
    assert sorted(p.shape for p in net.parameters()) == sorted(p.shape for p in ref.parameters())


def test_cifar_layout_keeps_32px_until_the_second_stage() -> None:
    net = build_arch("regnetx_200m", 100).eval()
    x = torch.randn(2, 3, 32, 32)
    stem = net.stem(x)
    assert stem.shape == (2, 32, 32, 32) and net.stem[0].stride == (1, 1)
    sizes = []
    out = stem
    for stage in net.stages:
        out = stage(out)
        sizes.append(tuple(out.shape[1:]))
    assert sizes == [(24, 32, 32), (56, 16, 16), (152, 8, 8), (368, 4, 4)]
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in net.modules())  # RegNetX: no SE
    logits = net(x)
    assert logits.shape == (2, 100) and torch.isfinite(logits).all()


def test_blocks_start_as_their_shortcut() -> None:
    net = build_arch("regnetx_200m", 10).eval()
    block, identity = net.stages[1][0], net.stages[2][1]
    assert all(
        torch.equal(b.branch[-1].weight, torch.zeros_like(b.branch[-1].weight)) for stage in net.stages for b in stage
    )
    assert torch.equal(block.branch[1].weight, torch.ones(56))
    x = torch.randn(3, 24, 6, 6)
    assert torch.allclose(block(x), torch.relu(block.shortcut(x)))
    assert identity.shortcut is None
    y = torch.randn(3, 152, 4, 4)
    assert torch.allclose(identity(y), torch.relu(y))


def test_bad_design_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="w_0 > 0 divisible by 8"):
        regnet_stages(36.44, 20, 2.49, 13)


@pytest.mark.parametrize("method", ["none", "cutmix", "hybridmix_v3"])
def test_table6_configs_use_the_repository_recipe(method: str) -> None:
    from pretrain.config import load_config

    cfg = load_config("pretrain/Base-CIFAR100-RegNet200M.yaml", ["MIX.METHOD", method])
    assert (cfg.MODEL.ARCH, cfg.DATA.NAME, cfg.MIX.METHOD) == ("regnetx_200m", "cifar100", method)
    # yhhhli/RegNet-Pytorch CIFAR10/main.py: batch 128, lr 0.1, momentum 0.9, wd 1e-4, 300 epochs.
    assert (cfg.SOLVER.BATCH_SIZE, cfg.SOLVER.BASE_LR, cfg.SOLVER.MOMENTUM) == (128, 0.1, 0.9)
    assert (cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.MAX_EPOCHS, cfg.MODEL.INPUT_SIZE) == (1e-4, 300, 32)
    assert cfg.SOLVER.LR_SCHEDULE == "cosine"  # the repository anneals with a cosine over the 300 epochs
