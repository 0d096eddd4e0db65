"""PyramidNet-110: sizes against the PyramidNet paper, the additive widths, the zero-padded shortcut."""

import pytest
import torch

from pretrain.models import build_arch
from pretrain.models.pyramidnet import PyramidBlock, PyramidNet


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("alpha, millions", [(48, 1.7), (84, 3.8)])
def test_parameter_counts_match_the_pyramidnet_paper(alpha: int, millions: float) -> None:
    # The PyramidNet paper's Table 4 (CIFAR-100, depth 110, basic blocks), rounded to 0.1 M.
    assert abs(_params(PyramidNet(110, alpha, 100)) / 1e6 - millions) < 0.15


def test_widths_grow_by_alpha_over_the_blocks() -> None:
    net = build_arch("pyramidnet110", 100)
    widths = [b.conv2.out_channels for layer in (net.layer1, net.layer2, net.layer3) for b in layer]
    assert len(widths) == 54 and widths[-1] == 16 + 64
    assert all(0 <= b - a <= 2 for a, b in zip(widths, widths[1:]))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert build_arch("pyramidnet110_a48", 10).fc.in_features == 16 + 48


def test_shortcut_is_pooled_identity_with_zero_padding() -> None:
    block = PyramidBlock(4, 6, stride=2).eval()
    with torch.no_grad():  # silence the residual branch: the output is the shortcut alone
        block.bn3.weight.zero_()
        block.bn3.bias.zero_()
    x = torch.randn(3, 4, 7, 7)
    out = block(x)
    assert out.shape == (3, 6, 4, 4)
    assert torch.allclose(out[:, :4], torch.nn.functional.avg_pool2d(x, 2, 2, ceil_mode=True))
    assert torch.equal(out[:, 4:], torch.zeros(3, 2, 4, 4))


def test_depth_must_be_6n_plus_2() -> None:
    with pytest.raises(ValueError, match="PyramidNet depth 100: expected 6 n \\+ 2"):
        PyramidNet(100, 64, 10)
