"""A pipeline stage on two machines, as a two-node SLURM job runs it: each node's task calls
``run_stage`` with its node rank and the first node as the rendezvous (``salfmix.pipeline.slurm``
gives them from SLURM's environment). Here both "nodes" are processes of this machine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

NODE = """
import json, sys
from salfmix.pipeline import runner, stages
from salfmix.pipeline.plan import plan_pipelines
args = json.loads(sys.argv[1])
(plan,) = plan_pipelines(**args["plan"])
ctx = stages.Context(**args["ctx"])
for stage in args["stages"]:
    runner.run_stage(plan, stage, ctx, quiet=True)
print("stage ended", flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(plan: dict, ctx: dict, stages: tuple[str, ...] = ("pretrain",)) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", NODE, json.dumps({"plan": plan, "ctx": ctx, "stages": stages})],
        cwd=str(REPO),
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_nodes_train_the_run_of_two_processes_on_one(tmp_path: Path) -> None:
    """torchrun over two machines (static rendezvous at the first): both nodes' stages succeed,
    rank 0's machine finds the run finished, and the weights equal, bit for bit, those of the
    same run with two processes on one machine (HybridMix v3: both generators and the saliency
    pass on both ranks)."""
    from pretrain.data.demo import write_demo_data

    tiny = write_demo_data(str(tmp_path / "data"), ["tinyimagenet"], classes=3, train_per_class=6, val_per_class=2)
    opts = (
        f"DATA.ROOT {tiny['tinyimagenet']} SOLVER.MAX_EPOCHS 2 SOLVER.BATCH_SIZE 6 MODEL.INPUT_SIZE 32 "
        "MIX.START_EPOCH 1 TRAIN.CHECKPOINT_PERIOD 1"
    ).split()

    def plan(out: str, num_gpus: int) -> dict:
        return {
            "methods": ["hybridmix_v3"],
            "seeds": [0],
            "out": str(tmp_path / out),
            "pretrain_config": "pretrain/Base-Demo-R50.yaml",
            "det_config": "detection/voc_demo_faster_rcnn_R_50_FPN_cpu.yaml",
            "pretrain_opts": opts,
            "num_gpus": num_gpus,
        }

    port = _free_port()
    nodes = [
        _start(plan("two_nodes", 1), {"nnodes": 2, "node_rank": rank, "master_addr": "127.0.0.1", "master_port": port})
        for rank in (0, 1)
    ]
    ended = [node.communicate(timeout=900) for node in nodes]
    for rank, (node, (stdout, stderr)) in enumerate(zip(nodes, ended)):
        assert node.returncode == 0 and "stage ended" in stdout, f"node {rank}: {stderr[-3000:]}"
    one = _start(plan("one_node", 2), {"master_port": _free_port()})
    stdout, stderr = one.communicate(timeout=900)
    assert one.returncode == 0, stderr[-3000:]

    def final(out: str) -> dict:
        run = tmp_path / out / "pretrain" / "hybridmix_v3_s0"
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
        return torch.load(run / "model_final.pth", map_location="cpu", weights_only=False)["model"]

    two_nodes, one_node = final("two_nodes"), final("one_node")
    assert two_nodes.keys() == one_node.keys()
    differ = [k for k in two_nodes if not torch.equal(two_nodes[k], one_node[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def test_two_nodes_fine_tune_and_evaluate_as_two_processes_on_one(tmp_path: Path) -> None:
    """The detection stage over two machines (torchrun and gloo on the CPU; Detectron2's launch
    with --num-machines on GPUs): both nodes succeed, and the fine-tuned weights and the
    evaluation equal those of two processes on one machine."""
    from detection.voc_demo import make_voc_demo
    from pretrain.data.demo import write_demo_data

    tiny = write_demo_data(str(tmp_path / "data"), ["tinyimagenet"], classes=3, train_per_class=6, val_per_class=2)
    voc = make_voc_demo(str(tmp_path / "voc"), num_trainval=4, num_test=3, seed=1)

    def plan(out: str) -> dict:
        return {
            "methods": ["none"],
            "seeds": [0],
            "out": str(tmp_path / out),
            "pretrain_config": "pretrain/Base-Demo-R50.yaml",
            "det_config": "detection/voc_demo_faster_rcnn_R_50_FPN_cpu.yaml",
            "pretrain_opts": f"DATA.ROOT {tiny['tinyimagenet']} SOLVER.MAX_EPOCHS 1 SOLVER.BATCH_SIZE 6 "
            "MODEL.INPUT_SIZE 32".split(),
            "det_opts": f"SALFMIX.VOC_FOLDER.DIR {voc} SOLVER.MAX_ITER 2 SOLVER.WARMUP_ITERS 1 SOLVER.STEPS () "
            "SOLVER.CHECKPOINT_PERIOD 100000 SOLVER.IMS_PER_BATCH 2".split(),
            "num_gpus": 1,
        }

    # One pretrained and converted backbone for both: the detection stage is what is compared.
    first = _start(plan("two_nodes"), {}, ("pretrain", "convert"))
    assert first.wait(timeout=900) == 0, first.stderr.read()[-3000:]
    shutil.copytree(tmp_path / "two_nodes", tmp_path / "one_node")
    port = _free_port()
    nodes = [
        _start(
            plan("two_nodes"),
            {"nnodes": 2, "node_rank": rank, "master_addr": "127.0.0.1", "master_port": port},
            ("detection",),
        )
        for rank in (0, 1)
    ]
    ended = [node.communicate(timeout=900) for node in nodes]
    for rank, (node, (stdout, stderr)) in enumerate(zip(nodes, ended)):
        assert node.returncode == 0 and "stage ended" in stdout, f"node {rank}: {stderr[-3000:]}"
    one = _start({**plan("one_node"), "num_gpus": 2}, {"master_port": _free_port()}, ("detection",))
    stdout, stderr = one.communicate(timeout=900)
    assert one.returncode == 0, stderr[-3000:]

    def final(out: str) -> tuple[dict, dict]:
        run = tmp_path / out / "detection" / "none_s0"
        weights = torch.load(run / "model_final.pth", map_location="cpu", weights_only=False)["model"]
        return json.loads((run / "eval_results.json").read_text())["datasets"], weights

    (two_results, two_weights), (one_results, one_weights) = final("two_nodes"), final("one_node")
    assert two_results == one_results  # (two iterations: the APs say little, the weights do)
    assert two_weights.keys() == one_weights.keys()
    differ = [k for k in two_weights if not torch.equal(two_weights[k], one_weights[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
