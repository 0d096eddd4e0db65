"""Every mixer gives on CUDA what it gives on the CPU for the same generator state (GPU only).

The mixers draw their random numbers on the CPU from their own generator, then work on the
tensors' device, so two mixers seeded alike must agree across devices. Tolerance: labels and
the untouched-pixel masks exactly; images and lam within 1e-5 (cut-and-paste methods move
pixels, which is exact; the blends and resizes compute in float32 on the device, whose fused
multiply-adds and interpolation may round differently from the CPU in the last bits; a patch
in the wrong place would differ by O(1)). PuzzleMix alone is compared more loosely: its graph
cut takes float costs truncated to integers (about 1e5 units), summed in another order on the
device, so a cost can move by a unit and, rarely, a block of the cut with it; at most 2% of the
pixels and 0.1 of each lam may differ (a wrong transport or mask on the device moves far more).
"""

import pytest
import torch

from pretrain.mixing import MIXERS

pytestmark = pytest.mark.gpu

SMIX_MODES = ("saliencymix", "hybridmix_v2")  # methods with SaliencyMix's official / per-sample modes
CASES = [(name, {}) for name in MIXERS] + [(name, {"mode": "per_sample"}) for name in SMIX_MODES]


def has_opencv_saliency() -> bool:
    """Whether OpenCV's contrib saliency module (SaliencyMix's official mode) is installed."""
    try:
        import cv2
    except ImportError:
        return False
    return hasattr(cv2, "saliency")


def mix(name, kwargs, images, targets, saliency):
    mixer = MIXERS[name](generator=torch.Generator().manual_seed(3), **kwargs)
    return mixer(images, targets, saliency=saliency if mixer.needs_saliency else None)


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{k.get('mode', 'default')}" for n, k in CASES])
def test_cuda_gives_the_cpu_result(name, kwargs, make_batch):
    if name in SMIX_MODES and kwargs.get("mode", "official") == "official" and not has_opencv_saliency():
        pytest.skip("SaliencyMix's official mode needs opencv-contrib (cv2.saliency)")
    images, targets = make_batch(b=16, h=64, w=64, seed=1)
    # Continuous random saliency: no two cells tie, so argmax / argmin cannot differ by rounding.
    saliency = torch.rand(16, 64, 64, generator=torch.Generator().manual_seed(2))
    cpu = mix(name, kwargs, images, targets, saliency)
    gpu = mix(name, kwargs, images.cuda(), targets.cuda(), saliency.cuda())
    assert gpu.images.is_cuda and gpu.lam.is_cuda and gpu.targets_a.is_cuda
    assert torch.equal(gpu.targets_a.cpu(), cpu.targets_a) and torch.equal(gpu.targets_b.cpu(), cpu.targets_b)
    if name == "puzzlemix":
        differ = ((gpu.images.cpu() - cpu.images).abs() > 1e-5).float().mean()
        assert float(differ) <= 0.02 and float((gpu.lam.cpu() - cpu.lam).abs().max()) <= 0.1
        return
    torch.testing.assert_close(gpu.images.cpu(), cpu.images, rtol=0, atol=1e-5)
    torch.testing.assert_close(gpu.lam.cpu().float(), cpu.lam.float(), rtol=0, atol=1e-5)
    own_cpu, own_gpu = getattr(cpu, "own", None), getattr(gpu, "own", None)
    assert (own_cpu is None) == (own_gpu is None)
    if own_cpu is not None:
        assert torch.equal(own_gpu.cpu(), own_cpu)


@pytest.mark.parametrize("name", [n for n in MIXERS if MIXERS[n].needs_saliency and n not in SMIX_MODES])
def test_cuda_computes_its_own_saliency(name, model, make_batch):
    """Given the model instead of a map, the mixer's saliency pass runs on CUDA too."""
    images, targets = make_batch(b=8, h=32, w=32, seed=4)
    result = MIXERS[name](generator=torch.Generator().manual_seed(5))(images.cuda(), targets.cuda(), model=model.cuda())
    assert result.images.is_cuda and bool(torch.isfinite(result.images).all())
