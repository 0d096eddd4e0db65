"""Two-epoch CPU runs of tools/pretrain_net.py, one per method family, and what they leave behind."""

import os

import pytest
import torch
import torchvision
from engine_helpers import BATCH, SIZES, check_metrics, config, epoch_checkpoints, final_weights, small_opts

import pretrain.engine.saliency_cache as cache_mod
import pretrain.engine.trainer as trainer_mod
from pretrain.config import load_config
from pretrain.data.loader import epoch_indices
from pretrain.models import build_arch


class MixerSpy:
    """Wraps the trainer's mixer: counts calls, saliency given, and batches it changed."""

    def __init__(self, mixer):
        self.mixer, self.calls, self.with_saliency, self.changed = mixer, 0, 0, 0

    def __getattr__(self, name):
        return getattr(self.mixer, name)

    def apply(self, images, targets, saliency, draws):
        self.calls += 1
        self.with_saliency += saliency is not None
        result = self.mixer.apply(images, targets, saliency, draws)
        self.changed += not torch.equal(result.images, images)
        return result


@pytest.fixture
def spies(monkeypatch):
    """The mixers the trainer builds (wrapped in MixerSpy), and the count of samples given a fresh
    saliency pass (by the trainer, or by the cache for samples it cannot serve)."""
    made, fresh = [], [0]
    real_build, real_saliency = trainer_mod.build_mixer, trainer_mod.gradient_saliency

    def build(cfg, generator):
        made.append(MixerSpy(real_build(cfg, generator)))
        return made[-1]

    def saliency(model, images, *args, **kw):
        fresh[0] += len(images)
        return real_saliency(model, images, *args, **kw)

    monkeypatch.setattr(trainer_mod, "build_mixer", build)
    monkeypatch.setattr(trainer_mod, "gradient_saliency", saliency)
    monkeypatch.setattr(cache_mod, "gradient_saliency", saliency)
    monkeypatch.setattr(cache_mod.CachedSaliency, "epoch_stats", lambda *a, **k: {})  # its probe pass is not counted
    return made, fresh


def expected_fresh_samples(num: int, seed: int, epochs: int) -> int:
    """Samples given a fresh pass: a batch holding a sample at its first visit (known on the host)
    gets one fresh pass over the whole batch; a batch of revisits none."""
    filled, fresh = set(), 0
    for epoch in range(1, epochs + 1):
        order = epoch_indices(num, epoch, seed, shuffle=True)
        for k in range(num // BATCH):
            batch = set(order[k * BATCH : (k + 1) * BATCH].tolist())
            fresh += BATCH if batch - filled else 0
            filled |= batch
    return fresh


# (config leaf, MIX.SALIENCY): every method family, both saliency sources for HybridMix v3.
RUNS = [
    ("tinyimagenet_preact18_none", "fresh"),
    ("tinyimagenet_preact18_cutout", "fresh"),
    ("tinyimagenet_preact18_salfmix", "fresh"),
    ("tinyimagenet_preact18_mixup", "fresh"),
    ("tinyimagenet_preact18_cutmix", "fresh"),
    ("tinyimagenet_preact18_saliencymix", "fresh"),
    ("tinyimagenet_preact18_resizemix", "fresh"),
    ("tinyimagenet_preact18_puzzlemix", "fresh"),
    ("tinyimagenet_preact18_hybridmix_v3", "fresh"),
    ("tinyimagenet_preact18_hybridmix_v3", "cached"),
    ("cifar10_preact18_salfmix_nopool", "cached"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,saliency", RUNS, ids=[f"{n.split('_', 2)[2]}-{s}" for n, s in RUNS])
def test_two_epoch_run(name, saliency, engine_data, run_pretrain, spies, tmp_path):
    dataset = name.split("_")[0]
    out = str(tmp_path / "out")
    # Cached: whole-image crops (flips only), so a sample's first visit covers every cell.
    extra = {"AUG__SCALE": "(1.0,1.0)", "AUG__RATIO": "(1.0,1.0)"} if saliency == "cached" else {}
    opts = small_opts(engine_data[dataset], out, MIX__SALIENCY=saliency, TRAIN__KEEP_CHECKPOINTS=1, **extra)
    record = run_pretrain(name, opts)
    cfg = load_config(os.path.join(out, "config.yaml"))
    assert cfg == load_config(config(name), opts)
    records = check_metrics(out, 2)
    assert records[-1] == record

    # Mixing happened in both epochs; saliency methods got a map every step.
    made, fresh = spies
    method = cfg.MIX.METHOD
    num_classes, per_class, _ = SIZES[dataset]
    num_train = num_classes * per_class
    steps = 2 * (num_train // BATCH)
    mixer = made[0]
    if method == "none":
        assert mixer.calls == 0 and fresh[0] == 0
    else:
        assert mixer.calls == steps and mixer.changed > 0
        if mixer.needs_saliency:
            assert mixer.with_saliency == steps
            # cached: a fresh pass for the batches holding a sample at its first visit (all of
            # epoch 1); batches of revisits are served without any pass
            first = expected_fresh_samples(num_train, cfg.SEED, 2)
            assert first >= steps // 2 * BATCH
            if saliency == "fresh":
                assert fresh[0] == steps * BATCH
            else:
                assert fresh[0] == first <= steps * BATCH
        else:
            assert fresh[0] == 0

    # A plain state dict that loads into the architecture; last_checkpoint; pruned to 1 checkpoint.
    weights = final_weights(out)
    assert all(isinstance(v, torch.Tensor) and not k.startswith("module.") for k, v in weights.items())
    build_arch(cfg.MODEL.ARCH, num_classes).load_state_dict(weights, strict=True)
    assert epoch_checkpoints(out) == ["model_epoch0002.pth"]
    with open(os.path.join(out, "last_checkpoint"), encoding="utf-8") as f:
        assert f.read().strip() == "model_epoch0002.pth"


@pytest.mark.slow
def test_resnet50_weights_load_into_torchvision(engine_data, run_pretrain, tmp_path):
    out = str(tmp_path / "out")
    opts = small_opts(engine_data["tinyimagenet"], out, SOLVER__MAX_EPOCHS=1, TRAIN__KEEP_CHECKPOINTS=3)
    run_pretrain("demo_r50_cutmix", opts)
    check_metrics(out, 1)
    weights = final_weights(out)
    torchvision.models.resnet50(num_classes=4).load_state_dict(weights, strict=True)
    final = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=True)
    assert final["arch"] == "resnet50" and len(final["classes"]) == 4 and final["epoch"] == 1
    assert epoch_checkpoints(out) == ["model_epoch0001.pth"]
