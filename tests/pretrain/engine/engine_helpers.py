"""Helpers of the engine tests: cheap run options, running tools/pretrain_net.py, reading its outputs.

The generated data: TinyImageNet layout with 4 classes x 2 training images (2 steps of batch 4
per epoch) and 2 test images per class; CIFAR-10 layout with 10 classes x 1 training image (2
steps, 2 images left out per epoch) and 1 test image per class, at its native 32 px. Runs use
PreActResNet-18 at 32 px.
"""

import glob
import importlib.util
import json
import math
import os
import subprocess
import sys

import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TOOL = "salfmix.cli.pretrain"  # the pretraining tool's module (python -m)
CONFIGS = os.path.join(REPO, "configs", "pretrain")
BATCH = 4
# (classes, training images per class, test images per class) of each generated dataset
SIZES = {"tinyimagenet": (4, 2, 2), "cifar10": (10, 1, 1)}


def config(name: str) -> str:
    """Path of a leaf config ``<family>_<method>`` over the family's shipped base (tests/leaves.py)."""
    from leaves import leaf_config

    return leaf_config(name)


def load_pretrain_tool():
    """The pretraining tool's module (tools/pretrain_net.py is its entry point)."""
    return importlib.import_module(TOOL)


def small_opts(data_root: str, out: str, **overrides) -> list[str]:
    """KEY VALUE overrides for a cheap CPU run: 32 px, batch 4, 2 epochs, mixing from epoch 1.

    ``overrides`` use ``__`` for the dots: ``MIX__SALIENCY="cached"``.
    """
    opts = {
        "DATA.ROOT": data_root,
        "OUTPUT_DIR": out,
        "MODEL.INPUT_SIZE": 32,
        "MODEL.CHANNELS_LAST": False,
        "SOLVER.BATCH_SIZE": BATCH,
        "SOLVER.MAX_EPOCHS": 2,
        "SOLVER.STEPS": "(2,)",
        "MIX.START_EPOCH": 1,
        "TRAIN.PROGRESS": False,
        "TEST.BATCH_SIZE": 4,
    }
    opts.update({k.replace("__", "."): v for k, v in overrides.items()})
    return [str(x) for kv in opts.items() for x in kv]


def tool_command(name: str, opts: list[str], resume: bool = False) -> list[str]:
    """The command line running tools/pretrain_net.py in a fresh interpreter."""
    return [sys.executable, "-m", TOOL, "--config-file", config(name)] + (["--resume"] if resume else []) + list(opts)


def subprocess_env(threads: int = 2) -> dict[str, str]:
    """This environment with ``threads`` torch threads per process (the CI machine has two cores)."""
    path = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    return dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=path)


def run_subprocess(cmd: list[str], threads: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``cmd`` from the repository root; fail with its output unless it exits 0."""
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(threads), capture_output=True, text=True, timeout=timeout)
    output = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{' '.join(cmd)}\nexit {proc.returncode}\n{output}"
    return proc


def read_metrics(out: str) -> list[dict]:
    """The records of ``out/metrics.jsonl``."""
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_metrics(out: str, epochs: int) -> list[dict]:
    """Exactly one record per epoch 1..epochs, a finite loss, errors in [0, 100]."""
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    for r in records:
        assert math.isfinite(r["train_loss"]) and r["train_loss"] > 0
        assert 0.0 <= r["top1_err"] <= 100.0 and 0.0 <= r["top5_err"] <= r["top1_err"]
    return records


def epoch_checkpoints(out: str) -> list[str]:
    """Basenames of the periodic checkpoints in ``out``, oldest first."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "model_epoch*.pth")))


def final_weights(out: str) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of ``out/model_final.pth``."""
    return torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same keys and bit-identical tensors."""
    assert list(a) == list(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
