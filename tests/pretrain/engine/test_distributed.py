"""Two-process DDP on the CPU (gloo) through torchrun, and a resume under it."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from engine_helpers import (
    REPO,
    SIZES,
    TOOL,
    assert_same_weights,
    check_metrics,
    config,
    epoch_checkpoints,
    final_weights,
    run_subprocess,
    small_opts,
    subprocess_env,
)

from pretrain.config import load_config
from pretrain.engine.checkpoint import load_checkpoint
from pretrain.engine.metrics import topk_correct
from pretrain.engine.training_data import build_data
from pretrain.models import build_arch

CONFIG = "tinyimagenet_preact18_hybridmix_v3"


def torchrun_command(name, opts, resume=False):
    """tools/pretrain_net.py under ``torchrun --standalone --nproc_per_node 2``."""
    return (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            TOOL,
            "--config-file",
            config(name),
        ]
        + (["--resume"] if resume else [])
        + list(opts)
    )


def torchrun(name, opts, resume=False):
    """Run tools/pretrain_net.py under torchrun with 2 processes (one thread each); fail unless it exits 0."""
    return run_subprocess(torchrun_command(name, opts, resume), threads=1)


@pytest.mark.slow
def test_two_process_run_and_resume(tiny_root, tmp_path):
    cache = str(tmp_path / "cache")  # packed on first use by rank 0, opened by rank 1
    opts = lambda out, epochs: small_opts(
        tiny_root,
        str(tmp_path / out),
        MIX__SALIENCY="cached",  # noqa: E731
        SOLVER__MAX_EPOCHS=epochs,
        DATA__CACHE_DIR=cache,
    )
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
    assert bool(torch.isfinite(state["saliency_cache"]["maps"]).any(1).all())
    gens = state["rank_generators"]
    assert len(gens) == 2 and not torch.equal(gens[0][0], gens[1][0]) and not torch.equal(gens[0][1], gens[1][1])

    # stopped by SIGTERM (to torchrun and both workers) after the first checkpoint, then resumed:
    # the same weights as the uninterrupted two-process run
    resumed = str(tmp_path / "resumed")
    cmd = torchrun_command(CONFIG, opts("resumed", 2))
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=subprocess_env(1),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    while not os.path.exists(os.path.join(resumed, "model_epoch0001.pth")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert "Traceback" not in stderr or "SignalException" in stderr  # torchrun's own report of the signal
    assert not os.path.exists(os.path.join(resumed, "model_final.pth")), "stopped too late to test anything"
    proc = torchrun(CONFIG, opts("resumed", 2), resume=True)
    assert "resuming from" in proc.stdout and "(epoch 2)" in proc.stdout
    check_metrics(resumed, 2)
    assert_same_weights(final_weights(ref), final_weights(resumed))


RANK_BUFFERS = """
import sys, torch, torch.distributed as dist
from pretrain.config import load_config
from pretrain.engine.trainer import Trainer
trainer = Trainer(load_config(sys.argv[1], sys.argv[2:]))
trainer.train()
buffers = torch.cat([b.double().flatten() for b in trainer.model.buffers()])
gathered = [torch.empty_like(buffers) for _ in range(2)]
dist.all_gather(gathered, buffers)
if dist.get_rank() == 0:
    print("BUFFERS", "same" if torch.equal(*gathered) else "differ")
"""


def test_ranks_share_running_statistics_after_each_epoch(tiny_root, tmp_path):
    """Each rank's training forward updates BatchNorm's running statistics with its own batch; at
    the end of an epoch every rank must hold rank 0's (the ones evaluated and checkpointed), or
    the eval-mode saliency pass of a resumed run differs from the uninterrupted run's."""
    script = tmp_path / "rank_buffers.py"
    script.write_text(RANK_BUFFERS)
    opts = small_opts(tiny_root, str(tmp_path / "out"), SOLVER__MAX_EPOCHS=1, DATA__CACHE_DIR=str(tmp_path / "cache"))
    proc = run_subprocess(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            config(CONFIG),
        ]
        + opts,
        threads=1,
    )
    assert "BUFFERS same" in proc.stdout, proc.stdout[-2000:]


def test_the_tool_leaves_the_process_group_it_trained_in(run_pretrain, tiny_root, tmp_path):
    """A rank that exits still in its gloo group can abort at the interpreter's shutdown (SIGABRT
    after a finished run, seen under torchrun): the tool destroys the group when the run ends."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        opts = small_opts(tiny_root, str(tmp_path / "out"), SOLVER__MAX_EPOCHS=1)
        run_pretrain("tinyimagenet_preact18_none", opts)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
