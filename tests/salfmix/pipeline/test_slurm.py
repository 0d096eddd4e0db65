"""``--launcher slurm``: the jobs it plans, the input it refuses before submitting, and -- on a real
one-node SLURM (the ``slurm_cluster`` fixture) -- a grid that is requeued mid-pretraining and ends
with the weights and the report of an uninterrupted local run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def data(module_tmp: Path) -> dict:
    """Tiny generated TinyImageNet and VOC layouts."""
    from detection.voc_demo import make_voc_demo
    from pretrain.data.demo import write_demo_data

    root = module_tmp / "slurm_data"
    root.mkdir()
    tiny = write_demo_data(str(root), ["tinyimagenet"], classes=3, train_per_class=6, val_per_class=2)["tinyimagenet"]
    return {"tiny": tiny, "voc": make_voc_demo(str(root / "voc"), num_trainval=4, num_test=3, seed=1)}


def _options(data: dict, out: Path, epochs: int = 1) -> list[str]:
    return [
        "--out",
        str(out),
        "--pretrain-config",
        "pretrain/Base-Demo-R50.yaml",
        "--det-config",
        "detection/voc_demo_faster_rcnn_R_50_FPN_cpu.yaml",
        "--pretrain-opts",
        f"DATA.ROOT {data['tiny']} SOLVER.MAX_EPOCHS {epochs} SOLVER.BATCH_SIZE 6 "
        "MODEL.INPUT_SIZE 32 MIX.START_EPOCH 1 TRAIN.CHECKPOINT_PERIOD 1",
        "--det-opts",
        f"SALFMIX.VOC_FOLDER.DIR {data['voc']} SOLVER.MAX_ITER 2 SOLVER.WARMUP_ITERS 1 "
        "SOLVER.STEPS () SOLVER.CHECKPOINT_PERIOD 100000",
    ]


def _methods(*argv: str, env: dict = None, timeout: float = 900) -> subprocess.CompletedProcess:
    # One torch thread, as a job of --cpus-per-task 1 uses: both launchers compute the same numbers.
    env = env or dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "salfmix.cli.run_methods", *argv],
        cwd=str(REPO),
        text=True,
        capture_output=True,
        timeout=timeout,
        env=env,
    )


def test_dry_run_prints_every_job_and_its_dependencies(data: dict, tmp_path: Path) -> None:
    proc = _methods(
        "--methods",
        "none cutmix",
        *_options(data, tmp_path / "out"),
        "--launcher",
        "slurm",
        "--dry-run",
        "--gpus-per-node",
        "4",
        "--nodes",
        "2",
        "--time",
        "600",
        "--partition",
        "gpu",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "none_s0/pretrain",
        "none_s0/convert",
        "none_s0/detection",
        "cutmix_s0/pretrain",
        "cutmix_s0/convert",
        "cutmix_s0/detection",
        "report",
    ]
    assert "nodes=2 cpus=4 gpus/node=4 time=600min partition=gpu" in lines[0] and "no dependency" in lines[0]
    assert "nodes=1 cpus=1 gpus=0" in lines[1] and lines[1].endswith("afterok: none_s0/pretrain")
    assert lines[2].endswith("afterok: none_s0/convert")
    assert lines[-1].endswith("afterany: none_s0/detection, cutmix_s0/detection")
    assert not (tmp_path / "out" / "slurm").exists()  # nothing submitted, nothing recorded


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("partitoin: gpu\n", "unknown key partitoin (valid: partition, account"),
        ("time_min: -5\n", "time_min -5: expected a non-negative integer"),
        ("- a list\n", "expected a mapping of keys, got list"),
    ],
)
def test_bad_cluster_config_is_one_line(data: dict, tmp_path: Path, yaml_text: str, message: str) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml_text)
    proc = _methods(
        "--methods", "none", *_options(data, tmp_path / "out"), "--launcher", "slurm", "--cluster-config", str(config)
    )
    assert proc.returncode == 2 and message in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert not (tmp_path / "out" / "slurm").exists()


def test_no_sbatch_on_the_path_is_one_line(data: dict, tmp_path: Path) -> None:
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))  # python, and no SLURM
    proc = _methods("--methods", "none", *_options(data, tmp_path / "out"), "--launcher", "slurm", env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "run_methods: error: --launcher slurm: sbatch is not on the PATH (run on a login node of the cluster)"
    )


def test_gpus_asked_for_must_be_visible(monkeypatch) -> None:
    from salfmix.errors import PipelineError
    from salfmix.pipeline.checks import check_visible_gpus

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_visible_gpus(4, cpu_ok=True)  # without CUDA the local launcher runs CPU processes
    with pytest.raises(PipelineError, match=r"--gpus-per-node 4: no CUDA device is visible on "):
        check_visible_gpus(4, "--gpus-per-node")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(PipelineError, match=r"--num-gpus 4: only 1 CUDA device visible on .*\(CUDA_VISIBLE_DEVICES="):
        check_visible_gpus(4, cpu_ok=True)
    check_visible_gpus(1)


def _wait(what: str, ready, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _report_rows(folder: Path) -> dict:
    return {row["method"]: row for row in json.loads((folder / "report.json").read_text())["methods"]}


@pytest.mark.slow
def test_unknown_partition_is_refused_before_submitting(slurm_cluster, data: dict, tmp_path: Path) -> None:
    proc = _methods(
        "--methods", "none", *_options(data, tmp_path / "out"), "--launcher", "slurm", "--partition", "nope"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "run_methods: error: --partition nope: no such partition (this cluster has: debug)"
    )
    short = _methods("--methods", "none", *_options(data, tmp_path / "out"), "--launcher", "slurm", "--time", "1")
    assert short.returncode == 2 and "shorter than the stop warning" in short.stderr
    assert not (tmp_path / "out" / "slurm").exists()


GRID = ["--methods", "none salfmix", "--quiet"]


@pytest.fixture(scope="module")
def local_grid(data: dict, module_tmp: Path) -> Path:
    """The grid run by the local launcher, uninterrupted."""
    local = module_tmp / "local_grid"
    local.mkdir()
    proc = _methods(*GRID, *_options(data, local, epochs=6))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return local


def _same_weights(run: Path, reference: Path) -> None:
    mine = torch.load(run / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    theirs = torch.load(reference / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    differ = [k for k in theirs if not torch.equal(mine[k], theirs[k])]
    assert not differ, f"{run.name}: {len(differ)} tensors differ, e.g. {differ[:3]}"


@pytest.mark.slow
def test_requeued_grid_ends_as_the_local_run(slurm_cluster, data: dict, local_grid: Path, tmp_path: Path) -> None:
    """Two methods on SLURM, the first pretraining job requeued while it trains: it resumes,
    nothing is submitted twice, and weights and report equal an uninterrupted local run."""
    local, remote = local_grid, tmp_path / "slurm"
    grid = GRID

    slurm = [*grid, *_options(data, remote, epochs=6), "--launcher", "slurm", "--cpus-per-task", "1"]
    proc = _methods(*slurm, "--no-wait")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = json.loads((remote / "slurm" / "jobs.json").read_text())
    assert sorted(jobs) == [
        "none_s0/convert",
        "none_s0/detection",
        "none_s0/pretrain",
        "report",
        "salfmix_s0/convert",
        "salfmix_s0/detection",
        "salfmix_s0/pretrain",
    ]
    job = jobs["none_s0/pretrain"]["job_id"]
    run = remote / "pretrain" / "none_s0"
    _wait("the first checkpoint of none_s0", lambda: (_manifest(run).get("epoch") or 0) >= 1)
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, timeout=60)

    proc = _methods(*slurm)  # the same command: follows the queued jobs, submits nothing again
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "submitted" not in proc.stdout
    assert json.loads((remote / "slurm" / "jobs.json").read_text()) == jobs
    attempts = _manifest(run)["attempts"]
    assert [a["slurm_job_id"] for a in attempts] == [job, job]
    assert [a["slurm_restart_count"] for a in attempts] == [0, 1]
    assert attempts[0]["end"].startswith("interrupted: SIGTERM") and attempts[1]["end"] == "finished"

    for name in ("none_s0", "salfmix_s0"):
        _same_weights(remote / "pretrain" / name, local / "pretrain" / name)
    ours, reference = _report_rows(remote / "report"), _report_rows(local / "report")
    assert sorted(ours) == sorted(reference) == ["none", "salfmix"]
    for method, row in reference.items():
        assert ours[method]["top1_err"] == row["top1_err"]
        assert abs(ours[method]["AP"] - row["AP"]) <= 1.0

    status = _methods(*slurm, "--status")
    assert status.returncode == 0
    lines = [line.split() for line in status.stdout.splitlines()[1:]]
    assert all(line[2] in ("finished", "written") and line[4] == "COMPLETED" for line in lines), status.stdout


@pytest.mark.slow
def test_time_limit_warning_checkpoints_and_requeues(
    slurm_cluster, data: dict, local_grid: Path, tmp_path: Path
) -> None:
    """SIGUSR2, what SLURM sends ``signal_delay_s`` before a time limit (sent here at once with
    ``scancel --signal``): the stage stops at a safe point, submitit requeues the job, the next
    attempt resumes and ends with the uninterrupted run's weights."""
    remote = tmp_path / "slurm"
    slurm = [
        "--methods",
        "none",
        "--quiet",
        *_options(data, remote, epochs=6),
        "--launcher",
        "slurm",
        "--cpus-per-task",
        "1",
    ]
    assert _methods(*slurm, "--no-wait").returncode == 0
    job = json.loads((remote / "slurm" / "jobs.json").read_text())["none_s0/pretrain"]["job_id"]
    run = remote / "pretrain" / "none_s0"
    _wait("the first checkpoint of none_s0", lambda: (_manifest(run).get("epoch") or 0) >= 1)
    subprocess.run(["scancel", "--signal", "USR2", job], check=True, capture_output=True, timeout=60)
    proc = _methods(*slurm)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    ends = [a["end"] for a in _manifest(run)["attempts"]]
    assert len(ends) == 2 and ends[0].startswith("interrupted: SIGUSR2") and ends[1] == "finished", ends
    _same_weights(run, local_grid / "pretrain" / "none_s0")


@pytest.mark.slow
def test_a_study_on_slurm_reports_as_the_local_one(slurm_cluster, tmp_path: Path) -> None:
    """run_study --launcher slurm: one job per run, then the report job; the same report as the
    local launcher's (the same test errors, run by run)."""
    import numpy as np

    from pretrain.data.cifar import write_cifar

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (24, 32, 32, 3), dtype=np.uint8), np.arange(24) % 3
    data = write_cifar(
        str(tmp_path / "data"), "cifar10", images[:12], labels[:12], images[12:], labels[12:], ["a", "b", "c"]
    )
    argv = [
        "--data-root",
        data,
        "--methods",
        "none",
        "salfmix",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--input-size",
        "16",
        "--start-epoch",
        "1",
        "--threads",
        "1",
    ]

    def study(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "salfmix.cli.run_study", *argv, *extra],
            cwd=str(REPO),
            text=True,
            capture_output=True,
            timeout=900,
        )

    local = study("--output-root", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr[-2000:]
    dry = study("--output-root", str(tmp_path / "slurm"), "--launcher", "slurm", "--dry-run")
    assert [line.split()[0] for line in dry.stdout.splitlines()[-3:]] == ["none/seed0", "salfmix/seed0", "report"]
    remote = study("--output-root", str(tmp_path / "slurm"), "--launcher", "slurm", "--cpus-per-task", "1")
    assert remote.returncode == 0, remote.stdout[-2000:] + remote.stderr[-2000:]
    assert "[report] job" in remote.stdout and "COMPLETED" in remote.stdout
    rows = {}
    for name in ("local", "slurm"):
        report = json.loads((tmp_path / name / "report" / "report.json").read_text())
        rows[name] = {row["label"]: row["top1_mean"] for row in report["rows"]}
    assert rows["slurm"] == rows["local"] and sorted(rows["local"]) == ["none", "salfmix"]
    status = study("--output-root", str(tmp_path / "slurm"), "--status")
    lines = [line.split() for line in status.stdout.splitlines()[1:]]
    assert [line[0] for line in lines] == ["none/seed0", "salfmix/seed0", "(all)"], status.stdout
    assert all(line[2] in ("finished", "written") and line[4] == "COMPLETED" for line in lines), status.stdout


@pytest.mark.slow
def test_a_node_of_a_multi_node_job_finds_its_rank_and_the_rendezvous(slurm_cluster, monkeypatch) -> None:
    """What each task of a two-node job gives the stage (test_multinode.py runs a stage with it):
    its node rank, the first host of the job's node list as the rendezvous, one port for all."""
    from salfmix.pipeline import slurm

    env = {
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_NODEID": "1",
        "SLURM_JOB_ID": "123456",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ctx = slurm._node_context()
    assert ctx == {"nnodes": 2, "node_rank": 1, "master_addr": "gpu07", "master_port": 20000 + 123456 % 20000}
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")
    assert slurm._node_context() == {}  # one node: torchrun --standalone
