"""tools/run_pipeline.py and tools/run_methods.py (and their .sh wrappers): a real pretrained
backbone through every stage, skipping finished stages on a re-run, and clear errors, before
anything runs, for bad options, unknown methods and mislabelled runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PIPELINE = str(REPO / "tools" / "run_pipeline.py")
METHODS = str(REPO / "tools" / "run_methods.py")
DET_CONFIG = str(REPO / "configs" / "detection" / "voc_demo_faster_rcnn_R_50_FPN_cpu.yaml")
PRETRAIN_CONFIGS = "pretrain/Base-Demo-R50.yaml"  # a shipped base: the pipeline sets MIX.METHOD


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="2")
    runner = ["bash"] if cmd[0].endswith(".sh") else [sys.executable]
    proc = subprocess.run([*runner, *cmd], cwd=str(REPO), env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode:
        raise AssertionError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def data(module_tmp: Path) -> dict:
    """Tiny generated TinyImageNet and VOC layouts."""
    from detection.voc_demo import make_voc_demo
    from pretrain.data.demo import write_demo_data

    root = module_tmp / "pipeline_data"
    root.mkdir()
    tiny = write_demo_data(str(root), ["tinyimagenet"], classes=3, train_per_class=6, val_per_class=2)["tinyimagenet"]
    voc = make_voc_demo(str(root / "voc"), num_trainval=4, num_test=3, seed=1)
    return {"tiny": tiny, "voc": voc}


def _options(data: dict, out: str, epochs: int = 1) -> list[str]:
    return [
        "--out",
        out,
        "--pretrain-config",
        PRETRAIN_CONFIGS,
        "--det-config",
        DET_CONFIG,
        "--pretrain-opts",
        f"DATA.ROOT {data['tiny']} SOLVER.MAX_EPOCHS {epochs} SOLVER.BATCH_SIZE 6 "
        f"MODEL.INPUT_SIZE 32 DATA.CACHE_DIR {out}/cache MIX.START_EPOCH 1",
        "--det-opts",
        f"SALFMIX.VOC_FOLDER.DIR {data['voc']} SOLVER.MAX_ITER 2 SOLVER.WARMUP_ITERS 1 SOLVER.STEPS () "
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
    for folder, stage in ((pre, "pretrain"), (det, "detection")):
        manifest = json.loads((folder / "run.json").read_text())
        assert (manifest["stage"], manifest["status"], manifest["method"]) == (stage, "finished", "hybridmix_v3")
    pre_metrics = json.loads((det / "pretrain_metrics.json").read_text())
    last = json.loads((pre / "metrics.jsonl").read_text().strip().splitlines()[-1])
    assert pre_metrics["top1_err"] == pytest.approx(last["top1_err"])
    stages = [line.split(":")[0] for line in first.stdout.splitlines() if line.startswith(f"[{name}] ")]
    assert stages == [f"[{name}] {s}" for s in ("pretrain", "convert", "fine-tune + evaluate", "results")]
    assert "d2.engine" in first.stdout and "d2.engine" in Path(out, "logs", f"{name}.detection.log").read_text()

    # A second run does nothing but report each stage as done: the manifests say finished, also
    # once the checkpoints of the finished pretraining run are deleted to save disk.
    for ckpt in pre.glob("model_epoch*.pth"):
        ckpt.unlink()
    mtimes = {p: p.stat().st_mtime_ns for p in (det / "eval_results.json", weights, pre / "model_final.pth")}
    again = _run([PIPELINE, "--method", "hybridmix_v3", "--seed", "1", *_options(data, out)])
    assert again.stdout.count(": done") == 3, again.stdout
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # Lost results of a finished model: only the evaluation runs again.
    (det / "eval_results.json").unlink()
    third = _run([PIPELINE, "--method", "hybridmix_v3", "--seed", "1", *_options(data, out)])
    assert "evaluate: " in third.stdout and "fine-tune + evaluate: " not in third.stdout.replace(": done", "")
    assert json.loads((det / "eval_results.json").read_text())["iteration"] is None


@pytest.mark.slow
def test_run_methods_writes_the_report(data: dict, tmp_path: Path) -> None:
    out = str(tmp_path / "study")
    proc = _run(
        [
            str(REPO / "tools" / "run_methods.sh"),
            "--methods",
            "none cutmix",
            "--seeds",
            "0",
            "--note",
            "generated test data",
            "--quiet",
            *_options(data, out),
        ]
    )
    assert "d2.engine" not in proc.stdout and "d2.engine" in Path(out, "logs", "none_s0.detection.log").read_text()
    report = json.loads(Path(out, "report", "report.json").read_text())
    assert sorted(m["method"] for m in report["methods"]) == ["cutmix", "none"]
    assert report["note"] == "generated test data"
    assert all(m["runs"] == 1 and "top1_err" in m for m in report["methods"])
    for ext in ("md", "csv", "png"):
        assert Path(out, "report", f"report.{ext}").stat().st_size > 0
    assert "generated test data" in proc.stdout


def _main(tool: str, argv: list[str], load_tool, capsys) -> tuple:
    module = load_tool(tool)
    with pytest.raises(SystemExit) as exit_info:
        module.main(module.get_parser().parse_args(argv))
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "does not set MIX.METHOD: give --method"),
        (["--method", "nomethod"], "unknown method 'nomethod'; valid: none, "),
        (["--method", "none", "--seed", "x"], "argument --seed: 'x': expected a non-negative integer"),
        (["--method", "none", "--num-gpus", "0"], "argument --num-gpus: '0': expected a positive integer"),
        (["--method", "none", "--bogus", "1"], "unrecognized arguments: --bogus 1"),
        (["--method", "none", "--det-config", "/nonexistent.yaml"], "--det-config: /nonexistent.yaml does not exist"),
        (["--method", "none", "--pretrain-opts", "SEED 3"], "--pretrain-opts: SEED is set by the pipeline (--seed)"),
        (
            ["--method", "none", "--det-opts", "SALFMIX.METHOD cutmix"],
            "--det-opts: SALFMIX.METHOD is set by the pipeline",
        ),
        (["--method", "none", "--pretrain-opts", "MIX.NOPE 1"], "unknown config key MIX.NOPE"),
    ],
)
def test_pipeline_bad_options(args: list[str], message: str, tmp_path: Path, load_tool, capsys) -> None:
    if "--pretrain-config" not in args and args:
        args = args + ["--pretrain-config", PRETRAIN_CONFIGS]
    code, last = _main("run_pipeline", [*args, "--out", str(tmp_path / "out")], load_tool, capsys)
    assert code == 2 and message in last
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_a_method_that_contradicts_the_config_is_refused(tmp_path: Path, load_tool, capsys) -> None:
    """--method cutmix with the config of none would train none and label it cutmix."""
    from leaves import leaf_config

    none_config = leaf_config("demo_r50_none")  # a config of one method
    code, last = _main(
        "run_pipeline",
        ["--method", "cutmix", "--pretrain-config", none_config, "--out", str(tmp_path)],
        load_tool,
        capsys,
    )
    assert code == 2 and "--method cutmix: " in last and "trains MIX.METHOD none, not cutmix" in last
    assert not list(tmp_path.iterdir())
    from salfmix.pipeline.plan import plan_pipelines

    # without --method the config names the run; MIX.METHOD in the overrides counts too
    (plan,) = plan_pipelines([None], [0], str(tmp_path), none_config, DET_CONFIG)
    assert plan.name == "none_s0" and plan.pretrain_dir.endswith(os.path.join("pretrain", "none_s0"))
    (plan,) = plan_pipelines([None], [2], str(tmp_path), none_config, DET_CONFIG, ["MIX.METHOD", "cutmix"])
    assert plan.name == "cutmix_s2"


def test_every_method_is_checked_before_the_first_run(tmp_path: Path, load_tool, capsys) -> None:
    code, last = _main(
        "run_methods",
        [
            "--methods",
            "none hybridmx_v3",
            "cutmx",
            "--pretrain-config",
            PRETRAIN_CONFIGS,
            "--out",
            str(tmp_path / "out"),
        ],
        load_tool,
        capsys,
    )
    assert code == 2 and last.startswith("run_methods: error: unknown methods 'hybridmx_v3', 'cutmx'; valid:")
    assert not (tmp_path / "out").exists()  # none did not run first
    code, last = _main(
        "run_methods", ["--methods", "none", "--seeds", "0 x", "--out", str(tmp_path / "out")], load_tool, capsys
    )
    assert code == 2 and "--seeds: 'x': expected a non-negative integer" in last


def test_a_folder_holding_another_method_is_refused(tmp_path: Path) -> None:
    from salfmix.pipeline.plan import PipelineError, plan_pipelines
    from salfmix.pipeline.runner import run_pipeline
    from salfmix.pipeline.stages import Context

    (plan,) = plan_pipelines(["none"], [0], str(tmp_path), PRETRAIN_CONFIGS, DET_CONFIG)
    os.makedirs(plan.pretrain_dir)
    Path(plan.pretrain_dir, "run.json").write_text(
        json.dumps({"stage": "pretrain", "status": "finished", "method": "cutmix"})
    )
    with pytest.raises(PipelineError, match=r"none_s0 holds a run of cutmix, not of none"):
        run_pipeline(plan, Context())


def test_conversion_is_redone_only_for_another_pretraining_run(tmp_path: Path) -> None:
    from salfmix.pipeline import stages

    pre = tmp_path / "pre"
    pre.mkdir()
    state = {k: torch.zeros(1) for k in ("fc.weight",)}
    torch.save(state, pre / "model_final.pth")
    (pre / "run.json").write_text(json.dumps({"status": "finished", "config_hash": "a", "ended": "t1"}))
    weights = str(tmp_path / "w" / "x.pkl")
    assert not stages.conversion_done(str(pre), weights)
    with pytest.raises(stages.StageFailed, match="model_final.pth: "):
        stages.convert(str(pre), weights)  # not a ResNet-50: refused, nothing written
    assert not os.path.exists(weights)
    os.makedirs(os.path.dirname(weights))
    Path(weights).write_bytes(b"converted")
    Path(weights[:-4] + ".source.json").write_text(json.dumps({"pretrain_run": {"config_hash": "a", "ended": "t1"}}))
    assert stages.conversion_done(str(pre), weights)
    (pre / "run.json").write_text(json.dumps({"status": "finished", "config_hash": "a", "ended": "t2"}))
    assert not stages.conversion_done(str(pre), weights)


def test_a_detection_run_of_earlier_weights_is_not_credited_to_new_ones(tmp_path: Path) -> None:
    from salfmix.pipeline.plan import PipelineError, plan_pipelines
    from salfmix.pipeline.runner import run_pipeline
    from salfmix.pipeline.stages import Context, conversion_done

    (plan,) = plan_pipelines(["none"], [0], str(tmp_path), PRETRAIN_CONFIGS, DET_CONFIG)
    for folder, manifest in (
        (plan.pretrain_dir, {"stage": "pretrain", "config_hash": "h", "ended": "t2"}),
        (plan.det_dir, {"stage": "detection"}),
    ):
        os.makedirs(folder)
        Path(folder, "run.json").write_text(json.dumps({**manifest, "status": "finished", "method": "none"}))
    Path(plan.pretrain_dir, "model_final.pth").write_bytes(b"weights")
    os.makedirs(os.path.dirname(plan.weights))
    Path(plan.weights).write_bytes(b"converted")
    record = Path(plan.weights[:-4] + ".source.json")
    record.write_text(json.dumps({"pretrain_run": {"config_hash": "h", "ended": "t1"}}))  # an earlier run's
    with pytest.raises(PipelineError, match=r"none_s0 holds a detection run fine-tuned from an earlier .*none_s0.pkl"):
        run_pipeline(plan, Context())
    record.unlink()  # converted before the records existed, after its source: adopted
    assert conversion_done(plan.pretrain_dir, plan.weights)
    assert json.loads(record.read_text())["pretrain_run"] == {"config_hash": "h", "ended": "t2"}


@pytest.mark.slow
def test_two_processes_per_stage_on_the_cpu(data: dict, tmp_path: Path) -> None:
    """--num-gpus 2 without CUDA: both training stages run two gloo processes through torchrun."""
    out = str(tmp_path / "ddp")
    _run([PIPELINE, "--method", "cutmix", "--num-gpus", "2", "--quiet", *_options(data, out)])
    log = Path(out, "logs", "cutmix_s0.detection.log").read_text()
    assert json.loads(Path(out, "detection", "cutmix_s0", "run_info.json").read_text())["world_size"] == 2, log[-2000:]
    manifest = json.loads(Path(out, "pretrain", "cutmix_s0", "run.json").read_text())
    assert manifest["status"] == "finished" and manifest["resume_command"].startswith("torchrun --nproc_per_node 2 ")


@pytest.mark.slow
def test_a_failing_stage_names_its_log(data: dict, tmp_path: Path) -> None:
    out = str(tmp_path / "bad")
    opts = _options(data, out)
    opts[opts.index("--pretrain-opts") + 1] = opts[opts.index("--pretrain-opts") + 1].replace(
        data["tiny"], str(tmp_path / "no_such_data")
    )
    proc = _run([PIPELINE, "--method", "none", "--quiet", *opts], check=False)
    log = f"{out}/logs/none_s0.pretrain.log"
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("run_pipeline: error: [none_s0] pretrain: ") and last.endswith(f"(its log: {log})")
    assert "no_such_data" in last and "Traceback" not in proc.stderr
    assert "no_such_data" in Path(log).read_text()  # the stage's own output is in its log


def _signal_after_first_epoch(cmd: list[str], out: str, signum: int) -> tuple[str, str, subprocess.Popen]:
    """Start the pipeline ``cmd``; once its pretraining has logged an epoch, send ``signum``;
    return its stdout, stderr and the ended process."""
    proc = subprocess.Popen(
        cmd,
        cwd=str(REPO),
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = Path(out, "pretrain", "none_s0", "metrics.jsonl")
    deadline = time.time() + 600
    while not metrics.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=600)
    return stdout, stderr, proc


@pytest.mark.slow
def test_ctrl_c_stops_the_stage_and_the_same_command_continues(data: dict, tmp_path: Path) -> None:
    out = str(tmp_path / "stop")
    cmd = [sys.executable, PIPELINE, "--method", "none", "--quiet", *_options(data, out, epochs=200)]
    stdout, stderr, proc = _signal_after_first_epoch(cmd, out, signal.SIGINT)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("run_pipeline: stopped by SIGINT")
    assert stderr.strip().splitlines()[-1].endswith("run the same command again to continue")
    assert "Traceback" not in stderr
    manifest = json.loads(Path(out, "pretrain", "none_s0", "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["method"] == "none"
    from salfmix.pipeline.stages import RESUME, pretrain_state

    assert pretrain_state(str(Path(out, "pretrain", "none_s0")), "none") == RESUME


@pytest.mark.slow
def test_sigterm_with_two_processes_is_a_clean_stop(data: dict, tmp_path: Path) -> None:
    """--num-gpus 2 (two gloo processes through torchrun): SIGTERM stops the workers at their safe
    point and the command ends 143 with the resume line, not with torchrun's traceback and 1."""
    out = str(tmp_path / "stop2")
    cmd = [sys.executable, PIPELINE, "--method", "none", "--num-gpus", "2", *_options(data, out, epochs=200)]
    stdout, stderr, proc = _signal_after_first_epoch(cmd, out, signal.SIGTERM)
    assert proc.returncode == 143, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("run_pipeline: stopped by SIGTERM"), stderr[-3000:]
    assert "Traceback" not in stderr and "exited with status" not in stderr, stderr[-3000:]
    assert "resume with" in stdout + stderr  # rank 0's line, from its safe point
    manifest = json.loads(Path(out, "pretrain", "none_s0", "run.json").read_text())
    assert manifest["status"] == "interrupted"


@pytest.mark.slow
def test_a_stopped_conversion_leaves_a_complete_file_or_none(data: dict, tmp_path: Path) -> None:
    """SIGTERM while converting: the (atomic) write finishes or never starts; no temp file stays.
    A temp file that a killed conversion left is removed by the next one (its writer is gone)."""
    out = str(tmp_path / "conv")
    _run([PIPELINE, "--method", "none", *_options(data, out)])
    source = Path(out, "pretrain", "none_s0", "model_final.pth")
    target = tmp_path / "w" / "none.pkl"
    target.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = target.parent / f".none.pkl.{int(dead.stdout)}-0123456789ab.tmp"
    stale.write_bytes(b"half")
    live = target.parent / f".other.pkl.{os.getpid()}-0123456789ab.tmp"  # a live writer's: kept
    live.write_bytes(b"writing")
    tool = [sys.executable, str(REPO / "tools" / "convert_to_detectron2.py"), str(source), str(target)]
    proc = subprocess.Popen(tool, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The stale temp goes once the tool is inside its stop handlers (a fixed sleep could signal a
    # slow machine's tool while it still imports torch: killed by the default action, not stopped).
    deadline = time.monotonic() + 300
    while stale.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode in (0, 143), stderr
    assert "Traceback" not in stderr
    left = sorted(p.name for p in target.parent.iterdir())
    assert not stale.exists() and live.exists()
    assert left in (sorted(["none.pkl", live.name]), [live.name])
    if target.exists():
        import pickle

        with open(target, "rb") as f:
            assert "model" in pickle.load(f)


@pytest.mark.parametrize(
    "tool, start",
    [
        (PIPELINE, "usage: run_pipeline"),
        (METHODS, "usage: run_methods"),
        (str(REPO / "tools" / "run_pipeline.sh"), "usage: run_pipeline"),
        (str(REPO / "tools" / "run_methods.sh"), "usage: run_methods"),
    ],
)
def test_help(tool: str, start: str) -> None:
    proc = _run([tool, "--help"])
    assert proc.stdout.startswith(start) and ("One method" in proc.stdout or "Several methods" in proc.stdout)


@pytest.mark.slow
def test_decisions_come_from_the_manifests_before_anything_runs(data: dict, tmp_path: Path) -> None:
    """One finished pipeline, then: another recipe is refused naming the keys (nothing runs); the
    converted weights or the pretraining folder deleted to save disk leave the finished detection
    run done (nothing is redone or misattributed); an unfinished detection run whose pretraining
    run is gone is refused at once."""
    import shutil

    out = str(tmp_path / "runs")
    _run([PIPELINE, "--method", "none", *_options(data, out)])
    name = "none_s0"
    pre, det, weights = Path(out, "pretrain", name), Path(out, "detection", name), Path(out, "weights", f"{name}.pkl")
    assert json.loads((det / "run_info.json").read_text())["backbone"]["config_hash"]
    results = (det / "eval_results.json").read_bytes()

    other = _options(data, out)
    other[other.index("--pretrain-opts") + 1] += " SOLVER.BASE_LR 0.05"
    proc = _run([PIPELINE, "--method", "none", *other], check=False)
    assert proc.returncode == 2 and "SOLVER.BASE_LR" in proc.stderr and "never reused" in proc.stderr, proc.stderr
    assert proc.stdout.strip() == ""  # refused before the first stage
    other = _options(data, out)
    other[other.index("--det-opts") + 1] += " SOLVER.BASE_LR 0.001"
    proc = _run([PIPELINE, "--method", "none", *other], check=False)
    assert proc.returncode == 2 and "detection" in proc.stderr and "SOLVER.BASE_LR" in proc.stderr, proc.stderr

    weights.unlink()
    again = _run([PIPELINE, "--method", "none", *_options(data, out)])
    assert "fine-tune + evaluate: done" in again.stdout and "not needed" in again.stdout, again.stdout
    assert not weights.exists() and (det / "eval_results.json").read_bytes() == results
    shutil.rmtree(pre)
    again = _run([PIPELINE, "--method", "none", *_options(data, out)])
    assert "fine-tune + evaluate: done" in again.stdout and not pre.exists(), again.stdout

    manifest = json.loads((det / "run.json").read_text())
    (det / "run.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    (det / "eval_results.json").unlink()
    proc = _run([PIPELINE, "--method", "none", *_options(data, out)], check=False)
    assert proc.returncode == 2 and "no longer in" in proc.stderr and not pre.exists(), proc.stderr


def test_folders_and_datasets_are_checked_before_anything_runs(data: dict, tmp_path: Path, load_tool, capsys) -> None:
    tool = load_tool("run_methods")

    def refused(*extra: str, out: str = str(tmp_path / "runs")) -> str:
        args = tool.get_parser().parse_args(["--methods", "none", *_options(data, out), *extra])
        with pytest.raises(SystemExit) as exit_:
            tool.main(args)
        assert exit_.value.code == 2
        return capsys.readouterr().err

    Path(tmp_path, "afile").write_text("x")
    err = refused(out=str(tmp_path / "afile"))
    assert "--out" in err and "not a folder" in err
    assert "--report-out" in refused("--report-out", str(tmp_path / "afile"))
    os.makedirs(tmp_path / "runs2")
    Path(tmp_path, "runs2", "weights").write_text("x")
    assert "weights" in refused(out=str(tmp_path / "runs2"))
    opts = _options(data, str(tmp_path / "runs3"))
    opts[opts.index("--det-opts") + 1] = opts[opts.index("--det-opts") + 1].replace(data["voc"], data["voc"] + "_typo")
    args = tool.get_parser().parse_args(["--methods", "none", *opts])
    with pytest.raises(SystemExit) as exit_:
        tool.main(args)
    assert exit_.value.code == 2 and "--det-config" in capsys.readouterr().err
    assert not Path(tmp_path, "runs3", "pretrain").exists()  # nothing ran, not even pretraining
