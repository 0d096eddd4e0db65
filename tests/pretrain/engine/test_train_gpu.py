"""Pretraining on CUDA with bf16 autocast and channels_last, and resuming there (GPU only).

ResNet-50 (the transfer model) at 64 px on the generated TinyImageNet-layout data, HybridMix v3
with the cached saliency (the state a resume must bring back: model, optimizer, every RNG, the
cache). cuDNN's kernels are not deterministic, so a resumed run is compared with an
uninterrupted one within a tolerance, not bit for bit as on the CPU (tests/pretrain/engine/test_resume.py).
"""

import math
import os

import pytest
import torch
from engine_helpers import check_metrics, config, final_weights, small_opts

from pretrain.config import load_config
from pretrain.engine.checkpoint import epoch_checkpoint_name
from pretrain.engine.trainer import Trainer

pytestmark = pytest.mark.gpu

CONFIG = "demo_r50_hybridmix_v3"


def gpu_opts(tiny_root: str, out: str, epochs: int = 2):
    return small_opts(
        tiny_root,
        out,
        MODEL__INPUT_SIZE=64,
        MODEL__CHANNELS_LAST=True,
        TRAIN__AMP="bf16",
        MIX__SALIENCY="cached",
        SOLVER__MAX_EPOCHS=epochs,
    )


def trainer(tiny_root: str, out: str, epochs: int = 2) -> Trainer:
    return Trainer(load_config(config(CONFIG), gpu_opts(tiny_root, out, epochs)))


def test_the_trainer_runs_on_cuda_in_bf16_and_channels_last(tiny_root, tmp_path):
    t = trainer(tiny_root, str(tmp_path / "probe"))
    assert t.device.type == "cuda"
    assert t.model.conv1.weight.is_cuda and t.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images_u8, _, _ = next(iter(t.data.train_loader))
    x = t.data.test_transform(images_u8.to(t.device)).contiguous(memory_format=torch.channels_last)
    with t.autocast():
        assert t.model(x).dtype == torch.bfloat16


def test_two_epochs_bf16_channels_last(tiny_root, run_pretrain, tmp_path):
    out = str(tmp_path / "run")
    run_pretrain(CONFIG, gpu_opts(tiny_root, out))
    records = check_metrics(out, 2)
    assert all(math.isfinite(r["images_per_s"]) and r["images_per_s"] > 0 for r in records)
    weights = final_weights(out)
    assert all(bool(torch.isfinite(v.float()).all()) for v in weights.values())


def relative_difference(a, b) -> float:
    num = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a if a[k].is_floating_point())
    den = sum(float(b[k].double().pow(2).sum()) for k in b if b[k].is_floating_point())
    return math.sqrt(num / den)


def test_resume_on_cuda(tiny_root, tmp_path):
    ref, cut = str(tmp_path / "ref"), str(tmp_path / "cut")
    trainer(tiny_root, ref).train()
    trainer(tiny_root, cut, epochs=1).train()  # stops after epoch 1, as a killed run would have

    resumed = trainer(tiny_root, cut)
    path = resumed.resume()
    assert os.path.basename(path) == epoch_checkpoint_name(1) and resumed.start_epoch == 2
    # what came back lives on the GPU: optimizer state and the saliency cache
    momenta = [v for s in resumed.optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    assert momenta and all(v.is_cuda for v in momenta)
    cache = getattr(resumed.cache, "cache", resumed.cache)
    assert cache.maps.is_cuda and bool(torch.isfinite(cache.maps).any())
    resumed.train()

    check_metrics(cut, 2)
    assert relative_difference(final_weights(cut), final_weights(ref)) < 1e-3
    loss = {name: check_metrics(out, 2)[1]["train_loss"] for name, out in (("ref", ref), ("cut", cut))}
    assert loss["cut"] == pytest.approx(loss["ref"], rel=2e-2)
