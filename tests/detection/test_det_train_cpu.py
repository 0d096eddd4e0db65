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
from salfmix.errors import DetectionSetupError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(REPO_ROOT / "configs" / "detection" / "voc_demo_faster_rcnn_R_50_FPN_cpu.yaml")


def _short_run_opts(voc_dir: str, weights: str, out_dir: str, iters: int) -> list:
    return [
        "MODEL.WEIGHTS",
        weights,
        "SALFMIX.VOC_FOLDER.DIR",
        voc_dir,
        "OUTPUT_DIR",
        out_dir,
        "SOLVER.MAX_ITER",
        str(iters),
        "SOLVER.WARMUP_ITERS",
        "4",
        "SOLVER.STEPS",
        "()",
        "SOLVER.CHECKPOINT_PERIOD",
        "100000",
    ]


def _train(load_detection_tool, argv):
    tool = load_detection_tool("train_detection")
    return tool.main(tool.get_parser().parse_args(argv))


@pytest.mark.slow
def test_short_cpu_training_then_eval_only_then_report(
    load_detection_tool, voc_demo_dir, converted_r50, tmp_path
) -> None:
    out = tmp_path / "run"
    pre = tmp_path / "metrics.jsonl"  # pretraining's per-epoch records
    pre.write_text(
        json.dumps({"epoch": 1, "train_loss": 5.0})
        + "\n"
        + json.dumps({"epoch": 2, "top1_err": 61.5, "top5_err": 35.25})
        + "\n"
    )
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
    assert info["protocol"] == "R50-FPN GN freeze_at 0, batch 2, lr 0.002, 12 iter (steps none)"
    assert json.loads((out / "pretrain_metrics.json").read_text())["top1_err"] == 61.5
    assert (out / "config.yaml").is_file() and (out / "model_final.pth").is_file()

    # evaluation only, from the trained checkpoint and the run's saved config: never over the finished
    # run's own results (refused, nothing touched), into another folder it gives the same AP
    argv = [
        "--eval-only",
        "--config-file",
        str(out / "config.yaml"),
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "SEED",
        "-1",
    ]
    from salfmix.errors import RunRefused

    with pytest.raises(RunRefused, match="already holds the finished run's final results"):
        _train(load_detection_tool, argv + ["OUTPUT_DIR", str(out)])
    assert json.loads((out / "eval_results.json").read_text()) == results
    _train(load_detection_tool, argv + ["OUTPUT_DIR", str(tmp_path / "eval")])
    again = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert again["iteration"] is None and again["weights"] == str(out / "model_final.pth")
    assert again["datasets"]["voc_demo_test"]["AP50"] == pytest.approx(entry["AP50"], abs=1e-6)
    info = json.loads((tmp_path / "eval" / "run_info.json").read_text())
    assert info["eval_weights"].endswith("model_final.pth") and info["method"] == "demo_random"

    report = load_detection_tool("voc_report")
    paths = report.main(report.get_parser().parse_args([str(out), "--out", str(tmp_path / "report")]))
    methods = json.loads(Path(paths["json"]).read_text())["methods"]
    assert methods[0]["method"] == "demo_random" and methods[0]["top5_err"] == 35.25
    assert methods[0]["protocol"] == json.loads((out / "run_info.json").read_text())["protocol"]


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
        _train(
            load_detection_tool,
            ["--config-file", DEMO_CONFIG] + opts[2:] + ["SALFMIX.PRETRAIN_METRICS", str(tmp_path / "m.json")],
        )
    with pytest.raises(
        DetectionSetupError,
        match=r"^SOLVER.AMP.ENABLED needs a GPU .* MODEL.DEVICE is 'cpu'; add SOLVER.AMP.ENABLED False$",
    ):
        _train(load_detection_tool, ["--config-file", DEMO_CONFIG] + opts[2:] + ["SOLVER.AMP.ENABLED", "True"])
    import pickle

    with open(tmp_path / "R-50.pkl", "wb") as f:  # Caffe2 blob names, as in the MSRA model-zoo file
        pickle.dump({"conv1_w": torch.zeros(1).numpy(), "res_conv1_bn_s": torch.ones(1).numpy()}, f)
    with pytest.raises(DetectionSetupError, match=r"R-50\.pkl: a Caffe2/MSRA pickle .* INPUT\.FORMAT RGB"):
        _train(
            load_detection_tool,
            ["--config-file", DEMO_CONFIG] + opts[2:] + ["MODEL.WEIGHTS", str(tmp_path / "R-50.pkl")],
        )
    assert not (tmp_path / "run").exists()  # nothing started


def test_dist_url_default_takes_a_free_port(load_detection_tool, monkeypatch) -> None:
    import importlib
    import socket

    d2_launch = importlib.import_module("detectron2.engine.launch")

    tool = load_detection_tool("train_detection")
    args = tool.get_parser().parse_args(["--config-file", DEMO_CONFIG])
    # Detectron2's own default is one port per user id: a second job of the user would meet the first
    assert args.dist_url == "auto"
    with socket.socket() as held:  # a port another job is using
        held.bind(("", 0))
        held.listen()
        assert d2_launch._find_free_port() != held.getsockname()[1]
    args = tool.get_parser().parse_args(["--num-gpus", "2", "--num-machines", "2", "--config-file", DEMO_CONFIG])
    monkeypatch.setattr(tool.torch.cuda, "is_available", lambda: True)
    with pytest.raises(DetectionSetupError, match=r"--num-machines 2: give --dist-url tcp://"):
        tool.main(args)


def test_spawned_workers_do_not_parse_the_annotations_again(
    load_detection_tool, voc_demo_dir, monkeypatch, tmp_path
) -> None:
    import detection.data
    import detection.train

    parsed = []
    real = detection.data.validate_voc_split  # annotations and images
    monkeypatch.setattr(detection.data, "validate_voc_split", lambda *a, **k: parsed.append(a[1]) or real(*a, **k))
    tool = load_detection_tool("train_detection")
    launched = {}
    monkeypatch.setattr(tool.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tool, "launch", lambda fn, n, **kw: launched.update(kw, n=n))
    argv = ["--num-gpus", "4", "--config-file", DEMO_CONFIG] + _short_run_opts(
        voc_demo_dir, "", str(tmp_path / "run"), 2
    )
    tool.main(tool.get_parser().parse_args(argv + ["MODEL.DEVICE", "cuda"]))
    assert parsed == ["trainval", "test"]  # the launching process parsed both splits once
    (args,) = launched["args"]
    assert launched["dist_url"] == "auto" and launched["n"] == 4 and args.datasets_validated
    monkeypatch.setattr(tool.torch.cuda, "is_available", lambda: False)
    args.opts = args.opts[:-2]  # a worker on this CPU-only machine: MODEL.DEVICE cpu again
    detection.train.check_setup(args)  # what each spawned worker runs
    assert parsed == ["trainval", "test"]
    # torchrun: the main process parses, the others only check the folders and hear its verdict
    del args.datasets_validated
    monkeypatch.setattr(detection.train.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(detection.train.comm, "is_main_process", lambda: False)
    monkeypatch.setattr(detection.train.comm, "all_gather", lambda error: ["", error])
    detection.train.check_setup(args)
    assert parsed == ["trainval", "test"]
    monkeypatch.setattr(detection.train.comm, "all_gather", lambda error: ["bad.xml: missing <name>", error])
    with pytest.raises(DetectionSetupError, match=r"^bad\.xml: missing <name>$"):
        detection.train.check_setup(args)


def test_cli_prints_one_line_error(tmp_path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "train_detection.py"),
            "--config-file",
            DEMO_CONFIG,
            "SOLVER.NOPE",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard only
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "error: override SOLVER.NOPE: unknown config key (neither Detectron2's nor SALFMIX.*)"
    )


def test_read_pretrain_metrics(tmp_path) -> None:
    from detection.train import read_pretrain_metrics

    (tmp_path / "m.json").write_text(json.dumps({"top1_err": 30, "top5_err": 10.5}))
    assert read_pretrain_metrics(str(tmp_path / "m.json"))["top5_err"] == 10.5
    lines = [
        {"epoch": 1, "top1_err": 50.0, "top5_err": 20.0},
        {"epoch": 2, "train_loss": 1.0},
        {"epoch": 3, "top1_err": 40.0, "top5_err": 15.0},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert read_pretrain_metrics(str(tmp_path / "m.jsonl"))["top1_err"] == 40.0
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DetectionSetupError, match=r"bad\.json: not a readable JSON file"):
        read_pretrain_metrics(str(tmp_path / "bad.json"))


def _torchrun_two_processes(voc_dir: str, weights: str, out, cwd) -> subprocess.CompletedProcess:
    """Six iterations of the demo config under torchrun with two gloo processes.

    The timeout only guards against a hang (a rank waiting forever fails the test either way); it is
    sized for a slow, shared machine, not for the expected run time.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(REPO_ROOT / "tools" / "train_detection.py"),
        "--config-file",
        DEMO_CONFIG,
    ] + _short_run_opts(voc_dir, weights, str(out), 6)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=str(cwd))


@pytest.mark.slow
def test_torchrun_two_processes_gloo(voc_demo_dir, converted_r50, tmp_path) -> None:
    out = tmp_path / "ddp"
    proc = _torchrun_two_processes(voc_demo_dir, converted_r50, out, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2
    results = json.loads((out / "eval_results.json").read_text())
    assert results["iteration"] == 6 and "voc_demo_test" in results["datasets"]


@pytest.mark.slow
def test_torchrun_bad_annotation_stops_every_process(voc_demo_dir, converted_r50, tmp_path) -> None:
    import shutil

    voc = tmp_path / "VOC2007"
    shutil.copytree(voc_demo_dir, voc)
    first_test = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    xml = voc / "Annotations" / f"{first_test}.xml"
    text = xml.read_text()
    start, end = text.index("<difficult>"), text.index("</difficult>") + len("</difficult>")
    xml.write_text(text[:start] + text[end:])  # the evaluator would fail on it after training
    proc = _torchrun_two_processes(str(voc), converted_r50, tmp_path / "run", tmp_path)
    assert proc.returncode != 0
    # rank 0 found it; rank 1, which did not parse, stops with the same line instead of waiting
    expected = f"error: {xml}: missing <difficult>"
    assert proc.stderr.count(expected) == 2, proc.stderr[-3000:]


def test_the_tool_leaves_the_process_group_it_ran_in(load_detection_tool, voc_demo_dir, converted_r50, tmp_path):
    """As the pretraining tool (tests/pretrain/engine/test_distributed.py): a worker that exits
    still in its gloo group can abort at the interpreter's shutdown after a finished run."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        opts = ["MODEL.WEIGHTS", converted_r50, "SALFMIX.VOC_FOLDER.DIR", voc_demo_dir]
        opts += ["OUTPUT_DIR", str(tmp_path / "e")]
        _train(load_detection_tool, ["--eval-only", "--config-file", DEMO_CONFIG, *opts])
        assert (tmp_path / "e" / "eval_results.json").is_file()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
