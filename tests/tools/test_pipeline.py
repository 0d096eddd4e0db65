"""tools/run_pipeline.sh and tools/run_methods.sh: a real pretrained backbone through every stage,
skipping finished stages on a re-run, and clear errors for bad options."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PIPELINE = str(REPO / "tools" / "run_pipeline.sh")
METHODS = str(REPO / "tools" / "run_methods.sh")
DET_CONFIG = str(REPO / "configs" / "detection" / "voc_demo_faster_rcnn_R_50_FPN_cpu.yaml")


def _run(cmd: List[str], check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="2")
    proc = subprocess.run(["bash", *cmd], cwd=str(REPO), env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode:
        raise AssertionError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny generated TinyImageNet and VOC layouts."""
    from detection.voc_demo import make_voc_demo
    from pretrain.data.demo import write_demo_data

    root = tmp_path_factory.mktemp("pipeline_data")
    tiny = write_demo_data(str(root), ["tinyimagenet"], classes=3, train_per_class=6, val_per_class=2)["tinyimagenet"]
    voc = make_voc_demo(str(root / "voc"), num_trainval=4, num_test=3, seed=1)
    return {"tiny": tiny, "voc": voc}


def _options(data: dict, out: str) -> List[str]:
    return [
        "--out", out,
        "--pretrain-config", str(REPO / "configs" / "pretrain" / "demo_r50_{method}.yaml"),
        "--det-config", DET_CONFIG,
        "--pretrain-opts", f"DATA.ROOT {data['tiny']} SOLVER.MAX_EPOCHS 1 SOLVER.BATCH_SIZE 6 MODEL.INPUT_SIZE 32 "
        f"DATA.CACHE_DIR {out}/cache MIX.START_EPOCH 1",
        "--det-opts", f"SALFMIX.VOC_FOLDER.DIR {data['voc']} SOLVER.MAX_ITER 2 SOLVER.WARMUP_ITERS 1 SOLVER.STEPS () "
        "SOLVER.CHECKPOINT_PERIOD 100000",
    ]


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_skips_them(data: dict, tmp_path: Path) -> None:
    out = str(tmp_path / "runs")
    first = _run([PIPELINE, "--method", "hybridmix_v3", "--seed", "1", *_options(data, out)])
    name = "hybridmix_v3_s1"
    pre, det = Path(out, "pretrain", name), Path(out, "detection", name)
    weights = Path(out, "weights", f"{name}.pkl")
    assert (pre / "model_final.pth").is_file() and weights.is_file()
    # The detection run starts from the pretrained backbone, not from random weights.
    final = torch.load(pre / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["cfg"] and "hybridmix_v3" in final["cfg"]
    results = json.loads((det / "eval_results.json").read_text())
    assert results["iteration"] == results["max_iter"] == 2
    info = json.loads((det / "run_info.json").read_text())
    assert info["method"] == "hybridmix_v3" and info["seed"] == 1 and info["weights"].endswith(f"{name}.pkl")
    pre_metrics = json.loads((det / "pretrain_metrics.json").read_text())
    last = json.loads((pre / "metrics.jsonl").read_text().strip().splitlines()[-1])
    assert pre_metrics["top1_err"] == pytest.approx(last["top1_err"])
    stages = [line.split(":")[0] for line in first.stdout.splitlines() if line.startswith(f"[{name}] ")]
    assert stages == [f"[{name}] {s}" for s in ("pretrain", "convert", "fine-tune + evaluate", "results")]

    # A second run does nothing but report each stage as done.
    mtime = (det / "eval_results.json").stat().st_mtime_ns
    again = _run([PIPELINE, "--method", "hybridmix_v3", "--seed", "1", *_options(data, out)])
    assert again.stdout.count(": done") == 3, again.stdout
    assert (det / "eval_results.json").stat().st_mtime_ns == mtime

    # Lost results of a finished model: only the evaluation runs again.
    (det / "eval_results.json").unlink()
    third = _run([PIPELINE, "--method", "hybridmix_v3", "--seed", "1", *_options(data, out)])
    assert "evaluate: " in third.stdout and "fine-tune + evaluate: " not in third.stdout.replace(": done", "")
    assert json.loads((det / "eval_results.json").read_text())["iteration"] is None


@pytest.mark.slow
def test_run_methods_writes_the_report(data: dict, tmp_path: Path) -> None:
    out = str(tmp_path / "study")
    proc = _run([METHODS, "--methods", "none cutmix", "--seeds", "0", "--note", "generated test data", "--quiet",
                 *_options(data, out)])
    assert "d2.engine" not in proc.stdout and "d2.engine" in Path(out, "logs", "none_s0.detection.log").read_text()
    report = json.loads(Path(out, "report", "report.json").read_text())
    assert sorted(m["method"] for m in report["methods"]) == ["cutmix", "none"]
    assert report["note"] == "generated test data"
    assert all(m["runs"] == 1 and "top1_err" in m for m in report["methods"])
    for ext in ("md", "csv", "png"):
        assert Path(out, "report", f"report.{ext}").stat().st_size > 0
    assert "generated test data" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--method is required"),
        (["--method", "nomethod"], "--pretrain-config:"),
        (["--method", "none", "--seed", "x"], "--seed 'x': expected a non-negative integer"),
        (["--method", "none", "--num-gpus", "0"], "--num-gpus '0': expected a positive integer"),
        (["--method", "none", "--bogus", "1"], "unknown option '--bogus'"),
        (["--method", "none", "--det-config", "/nonexistent.yaml"], "--det-config: /nonexistent.yaml does not exist"),
    ],
)
def test_pipeline_bad_options(args: List[str], message: str, tmp_path: Path) -> None:
    proc = _run([PIPELINE, *args, "--out", str(tmp_path)], check=False)
    assert proc.returncode == 2
    assert message in proc.stderr.strip().splitlines()[-1]


def test_run_methods_needs_methods(tmp_path: Path) -> None:
    proc = _run([METHODS, "--out", str(tmp_path)], check=False)
    assert proc.returncode == 2 and "--methods is required" in proc.stderr


@pytest.mark.slow
def test_two_processes_per_stage_on_the_cpu(data: dict, tmp_path: Path) -> None:
    """--num-gpus 2 without CUDA: both training stages run two gloo processes through torchrun."""
    out = str(tmp_path / "ddp")
    _run([PIPELINE, "--method", "cutmix", "--num-gpus", "2", "--quiet", *_options(data, out)])
    log = Path(out, "logs", "cutmix_s0.detection.log").read_text()
    assert json.loads(Path(out, "detection", "cutmix_s0", "run_info.json").read_text())["world_size"] == 2, log[-2000:]
    assert Path(out, "pretrain", "cutmix_s0", "model_final.pth").is_file()


def test_a_failing_stage_shows_its_log(data: dict, tmp_path: Path) -> None:
    out = str(tmp_path / "bad")
    opts = _options(data, out)
    opts[opts.index("--pretrain-opts") + 1] += " MIX.NOPE 1"
    proc = _run([PIPELINE, "--method", "none", "--quiet", *opts], check=False)
    assert proc.returncode == 2
    assert "unknown config key MIX.NOPE" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("the command failed; its log: " + f"{out}/logs/none_s0.pretrain.log")


@pytest.mark.parametrize("tool", [PIPELINE, METHODS])
def test_help(tool: str) -> None:
    proc = _run([tool, "--help"])
    assert proc.stdout.startswith(("One method", "Several methods")) and "set -e" not in proc.stdout
