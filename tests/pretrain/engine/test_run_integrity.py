"""The run folder of tools/pretrain_net.py under misuse: flags after the overrides, a locked folder, a
finished run, config drift on --resume, metrics after a stop, full disks, bad sizes (issue 9)."""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from engine_helpers import check_metrics, config, epoch_checkpoints, read_metrics, small_opts
from stop_signals import StopAfter

CONFIG = "tinyimagenet_preact18_cutmix"


def snapshot(out):
    """Every file of ``out`` with its mtime and bytes."""
    found = {}
    for root, _, files in os.walk(out):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, out)] = (os.stat(path).st_mtime_ns, f.read())
    return found


def stop_after(monkeypatch, polls, signum=signal.SIGINT):
    """The run sees ``signum`` at its ``polls``-th poll: the trainer polls after every step and
    after every epoch but the last (2 steps per epoch here)."""
    import pretrain.engine.runner as runner

    monkeypatch.setattr(runner, "StopSignals", StopAfter(polls, signum))


def manifest(out):
    with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
        return json.load(f)


def test_resume_after_the_overrides(tiny_root, pretrain_tool, tmp_path):
    out = str(tmp_path / "out")
    argv = ["--config-file", config(CONFIG)] + small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=1) + ["--resume"]
    args = pretrain_tool.get_parser().parse_args(argv)
    assert args.resume and args.opts[-2:] == ["TEST.BATCH_SIZE", "4"]
    pretrain_tool.main(args)  # --resume of an empty folder: starts
    check_metrics(out, 1)
    assert manifest(out)["status"] == "finished" and manifest(out)["method"] == "cutmix"


def test_a_folder_in_use_is_refused(tiny_root, run_pretrain, tmp_path):
    from salfmix.runs.lock import RunLock

    out = tmp_path / "out"
    out.mkdir()
    with RunLock(str(out), ["another", "run"]) as lock:
        lock.record_holder()
        with pytest.raises(
            SystemExit,
            match=rf"^error: OUTPUT_DIR {out} is in use by pid {os.getpid()} on .*"
            r"\(another run\): wait for it to end, or choose another OUTPUT_DIR$",
        ):
            run_pretrain(CONFIG, small_opts(tiny_root, str(out)))
    assert os.listdir(out) == ["run.lock"]


@pytest.mark.slow
def test_a_finished_run_is_never_overwritten(tiny_root, run_pretrain, tmp_path, capsys):
    out = str(tmp_path / "out")
    record = run_pretrain(CONFIG, small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=1))
    for name in epoch_checkpoints(out) + ["last_checkpoint"]:  # what users delete to save disk
        os.remove(os.path.join(out, name))
    before = snapshot(out)
    with pytest.raises(
        SystemExit,
        match=rf"^error: OUTPUT_DIR {out} holds a finished run of cutmix, ended .*; "
        "a finished run is never overwritten: choose another OUTPUT_DIR$",
    ):
        run_pretrain("tinyimagenet_preact18_none", small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=1))
    capsys.readouterr()
    assert run_pretrain(CONFIG, small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=1), resume=True) == record
    assert "the run is already finished (model_final.pth); nothing to do" in capsys.readouterr().out
    assert snapshot(out) == before  # not a byte, not an mtime


@pytest.mark.slow
def test_resume_refuses_another_config_and_metrics_stay_consistent(
    tiny_root, run_pretrain, tmp_path, monkeypatch, capsys
):
    out = str(tmp_path / "out")
    opts = small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=2, TRAIN__CHECKPOINT_PERIOD=2)
    stop_after(monkeypatch, 3)  # the signal comes during epoch 1's evaluation: stop after it, no checkpoint yet
    with pytest.raises(SystemExit) as stopped:
        run_pretrain(CONFIG, opts)
    assert stopped.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stopped by SIGINT after epoch 1; resume with: ")
    assert err[0].endswith(" --resume") and f"OUTPUT_DIR {out}" in err[0]
    assert [r["epoch"] for r in read_metrics(out)] == [1] and epoch_checkpoints(out) == []
    assert manifest(out)["status"] == "interrupted"

    monkeypatch.undo()
    before = snapshot(out)
    drift = opts + ["MIX.METHOD", "mixup", "SOLVER.BASE_LR", "0.5"]
    with pytest.raises(SystemExit) as refused:
        run_pretrain(CONFIG, drift, resume=True)
    assert "in MIX.METHOD: 'cutmix' -> 'mixup'; SOLVER.BASE_LR: 0.05 -> 0.5; resume with the run's config" in str(
        refused.value
    ) and str(refused.value).startswith("error: --resume: the config differs from the run's ")
    assert snapshot(out) == before

    allowed = small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=3, TRAIN__CHECKPOINT_PERIOD=2, TRAIN__EVAL_PERIOD=2)
    run_pretrain(CONFIG, allowed, resume=True)  # no checkpoint: starts again from epoch 1, metrics emptied first
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3]
    assert manifest(out)["status"] == "finished"
    assert [a["end"].split(":")[0] for a in manifest(out)["attempts"]] == ["interrupted", "finished"]


@pytest.mark.slow
def test_a_stop_after_a_checkpoint_resumes_without_duplicate_epochs(
    tiny_root, run_pretrain, tmp_path, monkeypatch, capsys
):
    out = str(tmp_path / "out")
    opts = small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=4, TRAIN__CHECKPOINT_PERIOD=2)
    stop_after(monkeypatch, 9, signal.SIGTERM)  # after epoch 3: its record is written, its checkpoint is not
    with pytest.raises(SystemExit) as stopped:
        run_pretrain(CONFIG, opts)
    assert stopped.value.code == 143
    assert "stopped by SIGTERM after epoch 3; resume with" in capsys.readouterr().err
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3] and epoch_checkpoints(out) == ["model_epoch0002.pth"]
    monkeypatch.undo()
    leftover = os.path.join(out, ".model_epoch0003.pth.0123456789ab.tmp")  # as a SIGKILL mid-write leaves it
    with open(leftover, "wb") as f:
        f.write(b"\0" * 1000)
    run_pretrain(CONFIG, opts, resume=True)
    check_metrics(out, 4)
    assert not os.path.exists(leftover)


def test_batch_larger_than_the_training_set(tiny_root, run_pretrain, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(
        SystemExit,
        match=r"^error: SOLVER\.BATCH_SIZE: 16 is larger than the training set of 8 "
        r"images: no training step per epoch$",
    ):
        run_pretrain(CONFIG, small_opts(tiny_root, str(out), SOLVER__BATCH_SIZE=16))
    assert not (out / "run.json").exists() and not (out / "model_final.pth").exists()


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("MIX.R", "-0.5", r"MIX\.R: expected a patch ratio in \(0, 1\], got -0\.5"),
        ("MIX.N", "64", r"MIX\.N: expected an integer grid size in \[1, 32\] \(the image side\), got 64"),
        ("MIX.R", "0.01", r"MIX\.R: patch side floor\(W \* r\) = floor\(32 \* 0\.01\) = 0 must lie in \[1, H=32\]"),
    ],
)
def test_mixing_geometry_is_checked_up_front_by_key(tiny_root, run_pretrain, tmp_path, key, value, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=rf"^error: {message}"):
        run_pretrain("tinyimagenet_preact18_hybridmix_v3", small_opts(tiny_root, str(out)) + [key, value])
    assert not (out / "run.json").exists()


def test_missing_base_and_output_dir_that_is_a_file(tiny_root, pretrain_tool, run_pretrain, tmp_path):
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text('_BASE_: "Base-Missing.yaml"\nMIX:\n  METHOD: cutmix\n')
    with pytest.raises(
        SystemExit,
        match=rf"^error: {leaf}: _BASE_ {tmp_path / 'Base-Missing.yaml'}: "
        "config file not found$",
    ):
        pretrain_tool.main(pretrain_tool.get_parser().parse_args(["--config-file", str(leaf)]))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit, match=rf"^error: OUTPUT_DIR {tmp_path / 'file'}: exists and is not a folder$"):
        run_pretrain(CONFIG, small_opts(tiny_root, str(tmp_path / "file")))


@pytest.mark.slow
def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_last_good_one(
    tiny_root, run_pretrain, tmp_path, monkeypatch
):
    real_save = torch.save

    def save(obj, f):  # the disk fills up while writing epoch 2's checkpoint
        if isinstance(obj, dict) and obj.get("epoch") == 2 and "optimizer" in obj:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", save)
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit, match=rf"^error: cannot write {out}/model_epoch0002\.pth: No space left on device$"):
        run_pretrain(CONFIG, small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=3))
    assert epoch_checkpoints(out) == ["model_epoch0001.pth"]
    assert torch.load(os.path.join(out, "model_epoch0001.pth"), weights_only=False)["epoch"] == 1
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert manifest(out)["status"] == "failed" and "No space left on device" in manifest(out)["error"]


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: a tmpfs of that size under tmp_path (root only; skipped where mount is refused)."""
    mounted = []

    def mount(size):
        path = tmp_path / f"tmpfs{len(mounted)}"
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.slow
def test_a_full_output_dir(tiny_root, run_pretrain, tmpfs):
    out = str(tmpfs("130m") / "out")  # room for one checkpoint of PreActResNet-18 (89 MB), not two
    with pytest.raises(SystemExit, match=rf"^error: cannot write {out}/model_epoch0002\.pth: No space left on device$"):
        run_pretrain(CONFIG, small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=3))
    assert epoch_checkpoints(out) == ["model_epoch0001.pth"]
    assert torch.load(os.path.join(out, "model_epoch0001.pth"), weights_only=False)["epoch"] == 1
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


LOAD = """
import sys
import pretrain.data.cache as cache
if sys.argv[3] == "unchecked":  # skip the free-space check: the preallocation must still catch it
    cache._check_free_space = lambda *args: None
try:
    cache.load_dataset("tinyimagenet", sys.argv[1], "train", cache_dir=sys.argv[2], progress=False)
except Exception as err:
    sys.exit(f"error: {err}")
"""


@pytest.mark.slow
def test_a_full_cache_dir_is_one_line_not_a_bus_error(tmp_path, tmpfs):
    from engine_helpers import REPO, subprocess_env

    from pretrain.data.demo import write_demo_data

    root = write_demo_data(
        str(tmp_path / "data"), datasets=("tinyimagenet",), classes=4, train_per_class=40, val_per_class=1
    )["tinyimagenet"]  # 160 images of 64 x 64: 1.9 MiB packed
    cache = tmpfs("1m")
    for mode in ("checked", "unchecked"):
        proc = subprocess.run(
            [sys.executable, "-c", LOAD, root, str(cache / "c"), mode],
            cwd=REPO,
            env=subprocess_env(1),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1, f"{mode}: exit {proc.returncode} (-7: SIGBUS)\n{proc.stderr[-2000:]}"
        last = proc.stderr.strip().splitlines()[-1]
        assert "Traceback" not in proc.stderr and last.startswith(f"error: cannot write {cache / 'c'}")
        assert (
            "it needs 2." in last and "MiB are free (DATA.CACHE_DIR chooses another folder)" in last
            if mode == "checked"
            else last.endswith("No space left on device")
        )
        assert os.listdir(cache / "c") == []  # no half-built pack left
