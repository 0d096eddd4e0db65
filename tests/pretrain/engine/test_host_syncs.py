"""A training step never waits for the host: counted on an emulated CUDA device (salfmix.bench.emulated_device).

Every method, both saliency sources where it takes saliency: after a warm-up epoch (the cache's
first visits), an epoch's only host synchronisations are the monitor's periodic reads (one per
TRAIN.LOG_PERIOD steps and one at the epoch's end). A mixer that says ``runs_on_host``
(PuzzleMix's graph cut) is the exception, and must be seen to synchronise.
"""

import math

import pytest
from engine_helpers import config, small_opts

import pretrain.engine.trainer as trainer_mod
from pretrain.config import load_config
from pretrain.mixing import MIXERS, make_mixer
from salfmix.bench.emulated_device import EMULATED, emulated_device

CASES = [(m, "fresh") for m in MIXERS] + [(m, "cached") for m, cls in MIXERS.items() if cls.needs_saliency]


def epoch_syncs(root, out, method, source, log_period, monkeypatch):
    """Syncs recorded in the second epoch of a run on the emulated device, and its step count."""
    monkeypatch.setattr(trainer_mod.dist_utils, "init_distributed", lambda: (0, 1, EMULATED))
    opts = small_opts(
        root,
        out,
        MIX__METHOD=method,
        MIX__SALIENCY=source,
        TRAIN__LOG_PERIOD=log_period,
        TRAIN__PROGRESS=True,
        MODEL__CHANNELS_LAST=True,
        MODEL__ARCH="resnet20",
        SOLVER__BATCH_SIZE=2,
    )
    cfg = load_config(config("tinyimagenet_preact18_none"), opts)
    with emulated_device() as emu:
        trainer = trainer_mod.Trainer(cfg)
        trainer.train_epoch(1)
        emu.reset()
        trainer.train_epoch(2)
        return emu, len(trainer.data.train_loader)


@pytest.mark.slow
@pytest.mark.parametrize("method,source", CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_a_steady_state_epoch_reads_the_device_only_at_the_periodic_reads(
    tiny_root, tmp_path, monkeypatch, method, source
):
    log_period = 3
    emu, steps = epoch_syncs(tiny_root, str(tmp_path / "out"), method, source, log_period, monkeypatch)
    if make_mixer(method).runs_on_host:
        assert emu.count() > math.ceil(steps / log_period), emu.summary()  # it says so, and it does
        return
    assert emu.count() == math.ceil(steps / log_period), emu.summary()
    assert all(s.kind == "tolist" and s.where.startswith("pretrain/engine/monitor.py") for s in emu.syncs), (
        emu.summary()
    )


def test_the_emulation_records_what_would_synchronise():
    """The counter itself: each kind of synchronisation is seen, asynchronous work is not."""
    import torch

    with emulated_device() as emu:
        x = torch.arange(6.0, device=EMULATED)
        y = (x * 2).sum() + torch.ones(6, device=EMULATED).mean()  # device work only
        z = torch.ones(6).to(EMULATED, non_blocking=True)  # asynchronous
        assert emu.count() == 0
        float(y)
        bool((x > 2).any())
        x.tolist()
        x.cpu()
        torch.ones(2).to(EMULATED)  # blocking
        torch.tensor([1.0, 2.0], device=EMULATED)
        x[x > 2]
        (x > 2).nonzero()
        assert (z * x).sum().device == EMULATED
    kinds = [s.kind for s in emu.syncs]
    assert kinds[:6] == [
        "item",
        "item",
        "tolist",
        "device-to-host copy",
        "blocking host-to-device copy",
        "torch.tensor(..., device=)",
    ]
    assert kinds[6:] == ["data-dependent shape (index)", "data-dependent shape (nonzero)"]
    assert all(s.where.startswith("tests/") for s in emu.syncs), emu.summary()
