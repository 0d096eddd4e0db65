"""tools/pretrain_net.py stopped from outside: SIGINT / SIGTERM (one line, the resume command, exit
130 / 143), SIGKILL before the first checkpoint, and a second run started on a folder in use."""

import json
import os
import shlex
import signal
import subprocess
import time

import pytest
from engine_helpers import (
    REPO,
    check_metrics,
    epoch_checkpoints,
    read_metrics,
    small_opts,
    subprocess_env,
    tool_command,
)

CONFIG = "tinyimagenet_preact18_hybridmix_v3"
pytestmark = pytest.mark.slow


def start(cmd):
    return subprocess.Popen(
        cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(proc, ready, what, timeout=600.0):
    """Poll ``ready()`` while ``proc`` runs."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(0.02)


def epochs_recorded(out):
    path = os.path.join(out, "metrics.jsonl")
    return [r["epoch"] for r in read_metrics(out)] if os.path.exists(path) else []


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_with_one_line_and_the_resume_command(tiny_root, tmp_path, signum, code):
    out = str(tmp_path / "out")
    proc = start(tool_command(CONFIG, small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=3)))
    wait_for(proc, lambda: os.path.exists(os.path.join(out, "model_epoch0001.pth")), "the first checkpoint")
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    last = stderr.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert last.startswith(f"stopped by {name} ") and "; resume with: " in last, last
    with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["status"] == "interrupted" and manifest["interrupted"].startswith(name)
    assert not os.path.exists(os.path.join(out, "model_final.pth"))

    again = shlex.split(last.split("; resume with: ", 1)[1])
    assert again[-1] == "--resume"
    done = subprocess.run(again, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    check_metrics(out, 3)


def test_sigkill_before_the_first_checkpoint_then_resume(tiny_root, tmp_path):
    out = str(tmp_path / "out")
    opts = small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=3, TRAIN__CHECKPOINT_PERIOD=2)
    proc = start(tool_command(CONFIG, opts))
    wait_for(proc, lambda: epochs_recorded(out) == [1], "epoch 1's record")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert epoch_checkpoints(out) == [], "killed too late to test anything"
    done = subprocess.run(
        tool_command(CONFIG, opts, resume=True),
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no checkpoint found: starting" in done.stdout
    check_metrics(out, 3)


def test_a_second_run_on_a_folder_in_use_is_refused(tiny_root, tmp_path):
    out = str(tmp_path / "out")
    first = start(tool_command(CONFIG, small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=2)))
    wait_for(first, lambda: os.path.exists(os.path.join(out, "run.json")), "run.json")
    first.send_signal(signal.SIGSTOP)  # hold it mid-run while the second one starts
    try:
        for resume in (False, True):
            second = subprocess.run(
                tool_command("tinyimagenet_preact18_none", small_opts(tiny_root, out), resume),
                cwd=REPO,
                env=subprocess_env(),
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert second.returncode == 1
            assert (
                second.stderr.strip()
                .splitlines()[-1]
                .startswith(f"error: OUTPUT_DIR {out} is in use by pid {first.pid} on ")
            ), second.stderr[-2000:]
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    check_metrics(out, 2)
    with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
        assert json.load(f)["method"] == "hybridmix_v3"
