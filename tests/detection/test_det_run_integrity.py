"""The run folder of tools/train_detection.py: flags after the overrides, config.yaml after the
GPU-count rescaling, a finished run, a folder in use, --eval-only, a stop and config drift (issue 9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from stop_signals import StopAfter

import detection  # noqa: F401  (before Detectron2)
from salfmix.errors import DetectionSetupError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(REPO_ROOT / "configs" / "detection" / "voc_demo_faster_rcnn_R_50_FPN_cpu.yaml")


def _opts(voc_dir: str, weights: str, out: Path, iters: int, **extra: str) -> list:
    opts = {
        "MODEL.WEIGHTS": weights,
        "SALFMIX.VOC_FOLDER.DIR": voc_dir,
        "OUTPUT_DIR": str(out),
        "SOLVER.MAX_ITER": str(iters),
        "SOLVER.WARMUP_ITERS": "2",
        "SOLVER.STEPS": "()",
        "SOLVER.CHECKPOINT_PERIOD": "100000",
        "SALFMIX.METHOD": "demo",
        "SEED": "1",
        **extra,
    }
    return [w for kv in opts.items() for w in kv]


def _main(load_detection_tool, argv):
    tool = load_detection_tool("train_detection")
    return tool.main(tool.get_parser().parse_args(argv))


def _snapshot(out: Path) -> dict:
    # log.txt aside: in this process Detectron2's logger still writes to the first run's log.txt
    # (a new process, as on the command line, has no file logger before the checks)
    return {
        p.name: (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(out.iterdir())
        if p.is_file() and p.name != "log.txt"
    }


def test_flags_anywhere_on_the_command_line(load_detection_tool) -> None:
    parser = load_detection_tool("train_detection").get_parser()
    args = parser.parse_args(
        ["--config-file", "c.yaml", "OUTPUT_DIR", "o", "SEED", "-1", "--resume", "--num-gpus", "1"]
    )
    assert args.resume and args.num_gpus == 1 and args.opts == ["OUTPUT_DIR", "o", "SEED", "-1"]
    args = parser.parse_args(["OUTPUT_DIR", "o", "--eval-only", "--config-file", "c.yaml"])
    assert args.eval_only and args.config_file == "c.yaml" and args.opts == ["OUTPUT_DIR", "o"]


@pytest.mark.slow
def test_a_finished_run_its_config_and_its_lock(
    load_detection_tool, voc_demo_dir, converted_r50, tmp_path, capsys
) -> None:
    from salfmix.errors import RunLocked, RunRefused
    from salfmix.runs.lock import RunLock

    out = tmp_path / "run"
    argv = ["--config-file", DEMO_CONFIG] + _opts(
        voc_demo_dir, converted_r50, out, 4, **{"SOLVER.REFERENCE_WORLD_SIZE": "2"}
    )
    _main(load_detection_tool, argv)
    # what ran on 1 process: Detectron2 halved the batch and the lr, doubled the schedule
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["SOLVER"]["IMS_PER_BATCH"] == 1 and saved["SOLVER"]["MAX_ITER"] == 8
    assert saved["SOLVER"]["BASE_LR"] == pytest.approx(0.001) and saved["SOLVER"]["REFERENCE_WORLD_SIZE"] == 1
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["stage"] == "detection" and manifest["status"] == "finished" and manifest["method"] == "demo"
    assert manifest["iteration"] == 8 and manifest["versions"]["detectron2"]
    assert json.loads((out / "eval_results.json").read_text())["iteration"] == 8

    before = _snapshot(out)
    capsys.readouterr()
    assert _main(load_detection_tool, argv + ["--resume"]) is None
    assert "the run is already finished (model_final.pth); nothing to do" in capsys.readouterr().out
    with pytest.raises(RunRefused, match="holds a finished run of demo.*never overwritten"):
        _main(load_detection_tool, argv)
    assert _snapshot(out) == before

    # --resume of the finished run asking for another recipe: refused, naming what differs
    with pytest.raises(RunRefused, match=r"finished run of demo whose config differs .* SOLVER.BASE_LR"):
        _main(load_detection_tool, argv + ["--resume", "SOLVER.BASE_LR", "0.01"])
    assert _snapshot(out) == before

    # --eval-only never writes into a finished run: not over its final results, not another
    # model's results (e.g. an intermediate checkpoint of the run)
    evaluate = [
        "--eval-only",
        "--config-file",
        str(out / "config.yaml"),
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "SEED",
        "-1",
    ]
    with pytest.raises(RunRefused, match="already holds the finished run's final results"):
        _main(load_detection_tool, evaluate)
    other = tmp_path / "model_0000004.pth"
    other.write_bytes((out / "model_final.pth").read_bytes())
    with pytest.raises(RunRefused, match=r"model_0000004.pth is not .*model_final.pth: an evaluation of other weights"):
        _main(load_detection_tool, evaluate[:4] + [str(other), "SEED", "-1"])
    assert _snapshot(out) == before
    # its own model's missing results are filled in; config.yaml still says how it was trained
    (out / "eval_results.json").unlink()
    _main(load_detection_tool, evaluate)
    assert (out / "config.yaml").read_bytes() == before["config.yaml"][1]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["iteration"] is None and results["weights"] == str(out / "model_final.pth")
    (out / "eval_results.json").unlink()

    with RunLock(str(out), ["someone", "else"]) as lock:
        lock.record_holder()
        with pytest.raises(RunLocked, match=rf"OUTPUT_DIR {out} is in use by pid {os.getpid()} .*\(someone else\)"):
            _main(load_detection_tool, evaluate)


@pytest.mark.slow
def test_a_stop_saves_a_checkpoint_and_resume_refuses_drift(
    load_detection_tool, voc_demo_dir, converted_r50, tmp_path, monkeypatch
) -> None:
    import detection.train as train_mod
    from salfmix.errors import RunRefused
    from salfmix.runs.signals import Interrupted

    out = tmp_path / "run"
    argv = ["--config-file", DEMO_CONFIG] + _opts(voc_demo_dir, converted_r50, out, 6, SEED="-1")
    # a signal during the setup (the first poll is before training): the run says so, nothing trained
    monkeypatch.setattr(train_mod, "StopSignals", StopAfter(1))
    with pytest.raises(Interrupted, match=r"stopped by SIGINT before training started"):
        _main(load_detection_tool, argv)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "interrupted" and "before training started" in manifest["interrupted"]
    assert manifest["command"] and not (out / "last_checkpoint").exists()
    monkeypatch.setattr(train_mod, "StopSignals", StopAfter(4))  # the setup's poll, then iterations 1-3
    with pytest.raises(Interrupted, match=r"stopped by SIGINT after iteration 3 of 6"):
        _main(load_detection_tool, argv + ["--resume"])
    monkeypatch.undo()
    assert (out / "last_checkpoint").read_text().strip() == "model_0000002.pth"
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["resume_command"].endswith(" --resume")
    seed = yaml.safe_load((out / "config.yaml").read_text())["SEED"]

    with pytest.raises(RunRefused, match=r"differs from the run's .*config\.yaml in SOLVER\.BASE_LR: 0\.002 -> 0\.02"):
        _main(load_detection_tool, argv + ["SOLVER.BASE_LR", "0.02", "--resume"])
    with pytest.raises(DetectionSetupError, match=r"SOLVER\.MAX_ITER 5 is below the run's 6"):
        _main(load_detection_tool, argv[:-2] + ["SOLVER.MAX_ITER", "5", "--resume"])
    with pytest.raises(RunRefused, match=r"already holds an interrupted run of demo .*pass --resume"):
        _main(load_detection_tool, argv)

    _main(load_detection_tool, argv + ["--resume"])  # SEED -1: the run's recorded seed is kept
    assert yaml.safe_load((out / "config.yaml").read_text())["SEED"] == seed
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert json.loads((out / "eval_results.json").read_text())["iteration"] == 6


@pytest.mark.slow
def test_ctrl_c_is_one_line_with_the_resume_command(voc_demo_dir, converted_r50, tmp_path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO_ROOT / "tools" / "train_detection.py"), "--config-file", DEMO_CONFIG]
    cmd += _opts(voc_demo_dir, converted_r50, out, 400, **{"SOLVER.CHECKPOINT_PERIOD": "5"})
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen(
        cmd, cwd=str(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    while not (out / "last_checkpoint").exists():  # a few iterations in
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    # Detectron2's warnings that the user can do nothing about are silenced (detection.compat)
    assert "torch.meshgrid" not in stderr and "torch.jit.script" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGINT after iteration ") and " of 400; resume with: " in last
    assert last.endswith(" --resume")
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def test_missing_base_and_output_dir_that_is_a_file(load_detection_tool, voc_demo_dir, converted_r50, tmp_path) -> None:
    from salfmix.errors import RunError

    leaf = tmp_path / "leaf.yaml"
    leaf.write_text('_BASE_: "Base-Missing.yaml"\nSEED: 1\n')
    with pytest.raises(
        DetectionSetupError,
        match=rf"^{leaf}: _BASE_ {tmp_path / 'Base-Missing.yaml'}: "
        "config file not found$",
    ):
        _main(load_detection_tool, ["--config-file", str(leaf)])
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RunError, match=rf"^OUTPUT_DIR {tmp_path / 'file'}: exists and is not a folder$"):
        _main(
            load_detection_tool,
            ["--config-file", DEMO_CONFIG] + _opts(voc_demo_dir, converted_r50, tmp_path / "file", 2),
        )
