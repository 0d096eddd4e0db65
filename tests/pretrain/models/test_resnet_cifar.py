"""ResNet-20 (He et al. 2016, CIFAR): size against the paper, shapes at 28 and 32 px, option-A shortcuts."""

import pytest
import torch

from pretrain.models import ARCHS, build_arch
from pretrain.models.resnet_cifar import BasicBlock, CifarResNet


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_the_paper() -> None:
    # He et al. 2016, Table 6: ResNet-20 has 0.27 M parameters (CIFAR-10); option A adds none.
    assert abs(_params(build_arch("resnet20", 10)) / 1e6 - 0.27) < 0.005
    assert "resnet20" in ARCHS


@pytest.mark.parametrize("side, last", [(28, 7), (32, 8)])
def test_forward_shapes(side: int, last: int) -> None:
    net = build_arch("resnet20", 10).eval()
    seen = {}
    net.layer3.register_forward_hook(lambda m, i, o: seen.update(layer3=tuple(o.shape)))
    with torch.no_grad():
        out = net(torch.randn(3, 3, side, side))
    assert out.shape == (3, 10) and seen["layer3"] == (3, 64, last, last)
    assert [len(layer) for layer in (net.layer1, net.layer2, net.layer3)] == [3, 3, 3]
    assert build_arch("resnet20", 100).fc.out_features == 100


def test_input_gradient_reaches_the_image() -> None:
    # gradient saliency needs d loss / d input through the option-A shortcuts
    x = torch.randn(2, 3, 28, 28, requires_grad=True)
    build_arch("resnet20", 10)(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    block = BasicBlock(4, 8, stride=2).eval()
    with torch.no_grad():  # silence the residual branch: the output is relu(shortcut)
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
        x = torch.randn(2, 4, 7, 7)
        out = block(x)
    assert out.shape == (2, 8, 4, 4)
    assert torch.equal(out[:, :4], torch.relu(x[:, :, ::2, ::2]))
    assert torch.equal(out[:, 4:], torch.zeros(2, 4, 4, 4))
    assert sum(p.numel() for n, p in block.named_parameters() if "conv" not in n and "bn" not in n) == 0


def test_depth_must_be_6n_plus_2() -> None:
    with pytest.raises(ValueError, match="CIFAR ResNet depth 21: expected 6 n \\+ 2"):
        CifarResNet(21, 10)
    assert _params(CifarResNet(32, 10)) > _params(CifarResNet(20, 10))
