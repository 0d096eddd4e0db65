"""Fine-tuning on the CPU: a short FPN run from a converted random ResNet-50, evaluation only,
the checks before training, and a two-process torchrun (gloo) run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import detection  # noqa: F401  (before Detectron2)
from detection.errors import DetectionSetupError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(REPO_ROOT / "configs" / "detection" / "voc_demo_faster_rcnn_R_50_FPN_cpu.yaml")


def _short_run_opts(voc_dir: str, weights: str, out_dir: str, iters: int) -> list:
    return [
        "MODEL.WEIGHTS", weights,
        "SALFMIX.VOC_FOLDER.DIR", voc_dir,
        "OUTPUT_DIR", out_dir,
        "SOLVER.MAX_ITER", str(iters),
        "SOLVER.WARMUP_ITERS", "4",
        "SOLVER.STEPS", "()",
        "SOLVER.CHECKPOINT_PERIOD", "100000",
    ]


def _train(load_detection_tool, argv):
    tool = load_detection_tool("train_detection")
    return tool.main(tool.get_parser().parse_args(argv))


@pytest.mark.slow
def test_short_cpu_training_then_eval_only_then_report(load_detection_tool, voc_demo_dir, converted_r50, tmp_path) -> None:
    out = tmp_path / "run"
    pre = tmp_path / "metrics.jsonl"  # pretraining's per-epoch records
    pre.write_text(json.dumps({"epoch": 1, "train_loss": 5.0}) + "\n" + json.dumps({"epoch": 2, "top1_err": 61.5, "top5_err": 35.25}) + "\n")
    opts = _short_run_opts(voc_demo_dir, converted_r50, str(out), 12)
    opts += ["SALFMIX.METHOD", "demo_random", "SEED", "3", "SALFMIX.PRETRAIN_METRICS", str(pre)]
    _train(load_detection_tool, ["--config-file", DEMO_CONFIG] + opts)

    with open(out / "eval_results.json") as f:
        results = json.load(f)
    assert results["iteration"] == results["max_iter"] == 12
    entry = results["datasets"]["voc_demo_test"]
    assert set(entry["per_class_AP50"]) == {"red", "green", "blue"}
    assert all(0.0 <= entry[k] <= 100.0 for k in ("AP", "AP50", "AP75"))
    with open(out / "metrics.json") as f:  # Detectron2's training events
        losses = [json.loads(line)["total_loss"] for line in f if "total_loss" in line]
    assert losses and all(math.isfinite(x) for x in losses)
    info = json.loads((out / "run_info.json").read_text())
    assert info["method"] == "demo_random" and info["seed"] == 3 and info["world_size"] == 1
    assert json.loads((out / "pretrain_metrics.json").read_text())["top1_err"] == 61.5
    assert (out / "config.yaml").is_file() and (out / "model_final.pth").is_file()

    # evaluation only, from the trained checkpoint and the run's saved config, into the same folder
    argv = ["--eval-only", "--config-file", str(out / "config.yaml")]
    _train(load_detection_tool, argv + ["MODEL.WEIGHTS", str(out / "model_final.pth"), "SEED", "-1"])
    again = json.loads((out / "eval_results.json").read_text())
    assert again["iteration"] is None
    assert again["datasets"]["voc_demo_test"]["AP50"] == pytest.approx(entry["AP50"], abs=1e-6)
    info = json.loads((out / "run_info.json").read_text())
    assert info["seed"] == 3 and info["eval_weights"].endswith("model_final.pth")  # training record kept

    report = load_detection_tool("voc_report")
    paths = report.main(report.get_parser().parse_args([str(out), "--out", str(tmp_path / "report")]))
    methods = json.loads(Path(paths["json"]).read_text())["methods"]
    assert methods[0]["method"] == "demo_random" and methods[0]["top5_err"] == 35.25


def test_checks_before_training(load_detection_tool, voc_demo_dir, torchvision_r50_state, tmp_path) -> None:
    import torch

    torch.save({"model": torchvision_r50_state}, tmp_path / "model_final.pth")
    opts = _short_run_opts(voc_demo_dir, str(tmp_path / "model_final.pth"), str(tmp_path / "run"), 2)
    with pytest.raises(DetectionSetupError, match="a torchvision checkpoint.*convert it first"):
        _train(load_detection_tool, ["--config-file", DEMO_CONFIG] + opts)
    with pytest.raises(DetectionSetupError, match="no CUDA device.*torchrun"):
        _train(load_detection_tool, ["--num-gpus", "2", "--config-file", DEMO_CONFIG] + opts)
    with pytest.raises(DetectionSetupError, match="SALFMIX.PRETRAIN_METRICS .*top1_err"):
        (tmp_path / "m.json").write_text("{}")
        _train(load_detection_tool, ["--config-file", DEMO_CONFIG] + opts[2:] + ["SALFMIX.PRETRAIN_METRICS", str(tmp_path / "m.json")])
    assert not (tmp_path / "run").exists()  # nothing started


def test_cli_prints_one_line_error(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "train_detection.py"), "--config-file", DEMO_CONFIG, "SOLVER.NOPE", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: override SOLVER.NOPE: unknown config key (neither Detectron2's nor SALFMIX.*)"


def test_read_pretrain_metrics(tmp_path) -> None:
    from detection.train import read_pretrain_metrics

    (tmp_path / "m.json").write_text(json.dumps({"top1_err": 30, "top5_err": 10.5}))
    assert read_pretrain_metrics(str(tmp_path / "m.json"))["top5_err"] == 10.5
    lines = [{"epoch": 1, "top1_err": 50.0, "top5_err": 20.0}, {"epoch": 2, "train_loss": 1.0}, {"epoch": 3, "top1_err": 40.0, "top5_err": 15.0}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert read_pretrain_metrics(str(tmp_path / "m.jsonl"))["top1_err"] == 40.0
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DetectionSetupError, match=r"bad\.json: not a readable JSON file"):
        read_pretrain_metrics(str(tmp_path / "bad.json"))


@pytest.mark.slow
def test_torchrun_two_processes_gloo(voc_demo_dir, converted_r50, tmp_path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(REPO_ROOT / "tools" / "train_detection.py"), "--config-file", DEMO_CONFIG,
    ] + _short_run_opts(voc_demo_dir, converted_r50, str(out), 6)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2
    results = json.loads((out / "eval_results.json").read_text())
    assert results["iteration"] == 6 and "voc_demo_test" in results["datasets"]
