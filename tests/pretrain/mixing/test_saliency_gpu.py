"""gradient_saliency on CUDA: the CPU's map, in fp32 and under bf16 autocast (GPU only)."""

import copy

import pytest
import torch

from pretrain.mixing.saliency import gradient_saliency

pytestmark = pytest.mark.gpu


@pytest.fixture
def exact_fp32():
    """Full fp32 convolutions and matmuls on CUDA (no TF32) for the comparison with the CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("reduction", ["max", "rms"])
def test_cuda_map_is_the_cpu_map(reduction, model, make_batch, exact_fp32):
    images, targets = make_batch(b=8, h=32, w=32, seed=6)
    cpu = gradient_saliency(model, images, targets, reduction)
    gpu_model = copy.deepcopy(model).cuda().train()
    before = {k: v.clone() for k, v in gpu_model.state_dict().items()}
    gpu = gradient_saliency(gpu_model, images.cuda(), targets.cuda(), reduction)
    assert gpu.is_cuda and gpu.shape == (8, 32, 32)
    assert relative_error(gpu.cpu(), cpu) < 1e-5
    # as on the CPU: train mode restored, no parameter gradient, BatchNorm statistics untouched
    assert gpu_model.training and all(p.grad is None for p in gpu_model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in gpu_model.state_dict().items())


def test_bf16_autocast_map_is_close_to_fp32(model, make_batch):
    """The trainer computes fresh saliency under bf16 autocast: about bf16's precision (8 bits)."""
    images, targets = make_batch(b=8, h=32, w=32, seed=7)
    gpu_model = model.cuda()
    x, y = images.cuda(), targets.cuda()
    fp32 = gradient_saliency(gpu_model, x, y)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = gradient_saliency(gpu_model, x, y)
    assert bf16.dtype == torch.float32 and bool(torch.isfinite(bf16).all())
    assert relative_error(bf16, fp32) < 5e-2
