"""Two-process DDP on the CPU (gloo) through torchrun, and a resume under it."""
import glob
import os
import sys

import pytest
import torch
from engine_helpers import (SIZES, TOOL, assert_same_weights, check_metrics, config, epoch_checkpoints, final_weights,
                            run_subprocess, small_opts)

from pretrain.config import load_config
from pretrain.engine.checkpoint import load_checkpoint
from pretrain.engine.data import build_data
from pretrain.engine.metrics import topk_correct
from pretrain.models import build_arch

CONFIG = "tinyimagenet_preact18_hybridmix_v3"


def torchrun(name, opts, resume=False):
    """Run tools/pretrain.py under ``torchrun --standalone --nproc_per_node 2`` (one thread each)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TOOL,
           "--config-file", config(name)] + (["--resume"] if resume else []) + list(opts)
    return run_subprocess(cmd, threads=1)


@pytest.mark.slow
def test_two_process_run_and_resume(tiny_root, tmp_path):
    cache = str(tmp_path / "cache")  # packed on first use by rank 0, opened by rank 1
    opts = lambda out, epochs: small_opts(tiny_root, str(tmp_path / out), MIX__SALIENCY="cached",  # noqa: E731
                                          SOLVER__MAX_EPOCHS=epochs, DATA__CACHE_DIR=cache)
    proc = torchrun(CONFIG, opts("ref", 2))
    ref = str(tmp_path / "ref")
    assert proc.stdout.count("done: ") == 1  # rank 0 reports
    records = check_metrics(ref, 2)
    # the two ranks' evaluation of the final weights = one process over the whole test set
    cfg = load_config(os.path.join(ref, "config.yaml"))
    data = build_data(cfg, 0, 1, torch.device("cpu"))
    model = build_arch(cfg.MODEL.ARCH, data.num_classes)
    model.load_state_dict(final_weights(ref))
    model.eval()
    counts = torch.zeros(3)
    with torch.no_grad():
        for images, targets in data.test_batches():
            counts += torch.tensor([*topk_correct(model(data.test_transform(images)), targets, (1, 5)), len(targets)])
    assert int(counts[2]) == SIZES["tinyimagenet"][0] * SIZES["tinyimagenet"][2]
    assert records[-1]["top1_err"] == pytest.approx(100 * (1 - float(counts[0] / counts[2])))
    assert records[-1]["top5_err"] == pytest.approx(100 * (1 - float(counts[1] / counts[2])))
    assert epoch_checkpoints(ref) == ["model_epoch0001.pth", "model_epoch0002.pth"]
    assert len(glob.glob(os.path.join(ref, "model_final.pth*"))) == 1  # one file, no temp left by another rank
    packs = sorted(os.listdir(cache))
    assert len(packs) == 2 and all(p.startswith(("tinyimagenet-train-", "tinyimagenet-val-")) for p in packs), packs

    state = load_checkpoint(os.path.join(ref, "model_epoch0002.pth"))
    # every sample of the epoch, gathered from both ranks, is in the cache; each rank's generators are kept
    assert bool(state["saliency_cache"]["filled"].all())
    gens = state["rank_generators"]
    assert len(gens) == 2 and not torch.equal(gens[0][0], gens[1][0]) and not torch.equal(gens[0][1], gens[1][1])

    # one epoch, then resumed to two: the same weights as the uninterrupted two-process run
    torchrun(CONFIG, opts("resumed", 1))
    proc = torchrun(CONFIG, opts("resumed", 2), resume=True)
    assert "resuming from" in proc.stdout and "(epoch 2)" in proc.stdout
    check_metrics(str(tmp_path / "resumed"), 2)
    assert_same_weights(final_weights(ref), final_weights(str(tmp_path / "resumed")))
