"""tools/convert_to_detectron2.py on training checkpoints, NaN weights and existing outputs (issue 9)."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import detection  # noqa: F401  (before Detectron2)
from salfmix.errors import DetectionSetupError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _convert(load_detection_tool, *argv: str) -> str:
    tool = load_detection_tool("convert_to_detectron2")
    return tool.main(tool.get_parser().parse_args(list(argv)))


def _training_checkpoint(state, epoch: int) -> dict:
    """What pretraining's model_epochNNNN.pth holds: weights plus optimizer, RNG states (numpy ones too), cfg."""
    return {
        "model": state,
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {},
        "epoch": epoch,
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        "loader": {"seed": 0},
        "saliency_cache": None,
        "cfg": "SOLVER:\n  MAX_EPOCHS: 300\n",
    }


def test_an_epoch_checkpoint_is_converted_with_a_note(
    load_detection_tool, torchvision_r50_state, tmp_path, capsys
) -> None:
    src = tmp_path / "model_epoch0042.pth"
    torch.save(_training_checkpoint(torchvision_r50_state, 42), src)
    out = tmp_path / "r50.pkl"
    _convert(load_detection_tool, str(src), str(out))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (
        f"note: {src} is the training checkpoint of epoch 42 of 300, not a finished "
        "model_final.pth: converting the weights of that intermediate epoch"
    )
    with open(out, "rb") as f:
        converted = pickle.load(f)["model"]
    np.testing.assert_array_equal(converted["res2.0.conv1.weight"], torchvision_r50_state["layer1.0.conv1.weight"])


def test_nan_weights_are_refused_naming_the_tensor(load_detection_tool, torchvision_r50_state, tmp_path) -> None:
    state = dict(torchvision_r50_state)
    state["layer3.1.conv2.weight"] = state["layer3.1.conv2.weight"].clone()
    state["layer3.1.conv2.weight"][0, 0, 0, :2] = torch.tensor([float("nan"), float("inf")])
    torch.save({"model": state}, tmp_path / "model_final.pth")
    with pytest.raises(
        DetectionSetupError,
        match=r"model_final\.pth: layer3\.1\.conv2\.weight: 2 of 589824 values "
        r"are NaN or infinite; not converted$",
    ):
        _convert(load_detection_tool, str(tmp_path / "model_final.pth"), str(tmp_path / "r50.pkl"))
    assert sorted(os.listdir(tmp_path)) == ["model_final.pth"]


def test_an_existing_output_needs_force(load_detection_tool, torchvision_r50_state, tmp_path) -> None:
    torch.save({"model": torchvision_r50_state}, tmp_path / "model_final.pth")
    out = tmp_path / "r50.pkl"
    out.write_bytes(b"an earlier conversion")
    with pytest.raises(DetectionSetupError, match=r"r50\.pkl: exists; pass --force to replace it$"):
        _convert(load_detection_tool, str(tmp_path / "model_final.pth"), str(out))
    assert out.read_bytes() == b"an earlier conversion"
    _convert(load_detection_tool, "--force", str(tmp_path / "model_final.pth"), str(out))  # flags anywhere
    with open(out, "rb") as f:
        assert len(pickle.load(f)["model"]) == 265
    assert sorted(os.listdir(tmp_path)) == ["model_final.pth", "r50.pkl"]


def test_cli_error_is_one_line(torchvision_r50_state, tmp_path) -> None:
    torch.save(_training_checkpoint({"fc.weight": torch.zeros(2, 2)}, 3), tmp_path / "model_epoch0003.pth")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "convert_to_detectron2.py"),
            str(tmp_path / "model_epoch0003.pth"),
            str(tmp_path / "r50.pkl"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {tmp_path / 'model_epoch0003.pth'}: not a complete ResNet-50 backbone: missing stem")
    )
