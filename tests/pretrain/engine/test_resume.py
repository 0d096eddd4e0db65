"""Resuming: a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one."""

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from engine_helpers import (
    REPO,
    assert_same_weights,
    check_metrics,
    final_weights,
    read_metrics,
    run_subprocess,
    small_opts,
    subprocess_env,
    tool_command,
)

from pretrain.engine.checkpoint import epoch_checkpoint_name, last_checkpoint, load_checkpoint

# HybridMix v3 with the cached saliency: the cache, both generators, the loader and the optimizer
# all have to come back exactly for the weights to match.
CONFIG = "tinyimagenet_preact18_hybridmix_v3"
EPOCHS = 3


def kill_after_first_checkpoint(cmd, out, timeout=600.0):
    """Start ``cmd``, SIGKILL it as soon as the epoch-1 checkpoint exists; returns that path."""
    ckpt = os.path.join(out, epoch_checkpoint_name(1))
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(ckpt):
            assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return ckpt


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tiny_root, tmp_path):
    ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
    opts = lambda out: small_opts(tiny_root, out, MIX__SALIENCY="cached", SOLVER__MAX_EPOCHS=EPOCHS)  # noqa: E731
    run_subprocess(tool_command(CONFIG, opts(ref)))

    kill_after_first_checkpoint(tool_command(CONFIG, opts(killed)), killed)
    assert not os.path.exists(os.path.join(killed, "model_final.pth")), "killed too late to test anything"
    resumed_from = last_checkpoint(killed)
    state = load_checkpoint(resumed_from)
    assert state["saliency_cache"] is not None and bool(torch.isfinite(state["saliency_cache"]["maps"]).any())
    # As if the kill had come between an epoch's metrics record and its checkpoint.
    with open(os.path.join(killed, "metrics.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"epoch": state["epoch"] + 1, "train_loss": 123.0, "top1_err": 0.0, "top5_err": 0.0}) + "\n")

    proc = run_subprocess(tool_command(CONFIG, opts(killed), resume=True))
    assert f"resuming from {resumed_from} (epoch {state['epoch'] + 1})" in proc.stdout
    assert_same_weights(final_weights(ref), final_weights(killed))
    strip = lambda records: [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]  # noqa: E731
    assert strip(check_metrics(killed, EPOCHS)) == strip(read_metrics(ref))


def test_refuses_an_output_dir_with_checkpoints_without_resume(tiny_root, run_pretrain, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / epoch_checkpoint_name(2)).write_bytes(b"")
    with pytest.raises(
        SystemExit,
        match=r"already holds a run \(model_epoch0002\.pth\): pass --resume to continue it, "
        r"or choose another OUTPUT_DIR$",
    ):
        run_pretrain(CONFIG, small_opts(tiny_root, str(out)))
    assert sorted(os.listdir(out)) == [epoch_checkpoint_name(2)]  # nothing written, nothing removed


def test_resume_from_a_corrupt_checkpoint_is_one_line(tiny_root, run_pretrain, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    bad = out / epoch_checkpoint_name(1)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match=rf"^error: --resume: {bad}: not a readable checkpoint") as exc:
        run_pretrain(CONFIG, small_opts(tiny_root, str(out)), resume=True)
    assert "\n" not in str(exc.value)
    assert bad.read_bytes() == b"not a checkpoint"  # left for the user to inspect
