"""detection.checkpoint.SafeCheckpointer: atomic saves, a resume past a damaged checkpoint, and
initial weights that must cover the pretrained trunk; detection.run_folder.truncate_metrics."""

from __future__ import annotations

import json
import os

import pytest
import torch

from detection.checkpoint import SafeCheckpointer, trunk_keys
from salfmix.errors import DetectionSetupError

DEMO_CONFIG = os.path.join(
    os.path.dirname(__file__), "..", "..", "configs", "detection", "voc_demo_faster_rcnn_R_50_FPN_cpu.yaml"
)


def _checkpointer(tmp_path) -> SafeCheckpointer:
    model = torch.nn.Linear(3, 2)
    return SafeCheckpointer(model, save_dir=str(tmp_path))


def test_saves_are_atomic_and_tag_the_last(tmp_path, monkeypatch) -> None:
    ckpt = _checkpointer(tmp_path)
    ckpt.save("model_0000001", iteration=1)
    before = (tmp_path / "model_0000001.pth").read_bytes()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"

    def dies(*args, **kwargs):  # a write that fails half way (a full disk, a kill)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(Exception, match="No space left"):
        ckpt.save("model_0000002", iteration=2)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]  # no torn file, no temp
    assert (tmp_path / "model_0000001.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, damage) -> None:
    ckpt = _checkpointer(tmp_path)
    ckpt.save("model_0000004", iteration=4)
    ckpt.save("model_0000009", iteration=9)
    damaged = tmp_path / "model_0000009.pth"
    if damage == "truncated":
        damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    elif damage == "empty":
        damaged.write_bytes(b"")
    else:
        damaged.unlink()
    assert ckpt.get_checkpoint_file() == str(tmp_path / "model_0000004.pth")
    assert ckpt.resume_or_load("", resume=True)["iteration"] == 4


def test_intact_last_checkpoint_is_used(tmp_path) -> None:
    ckpt = _checkpointer(tmp_path)
    ckpt.save("model_0000004", iteration=4)
    ckpt.save("model_0000009", iteration=9)
    assert ckpt.get_checkpoint_file() == str(tmp_path / "model_0000009.pth")


def test_trunk_keys_leave_out_fpn_and_heads() -> None:
    names = [
        "backbone.bottom_up.stem.conv1.weight",
        "backbone.bottom_up.res4.5.conv2.weight",
        "backbone.fpn_lateral2.weight",
        "roi_heads.res5.0.conv1.weight",
        "roi_heads.box_predictor.cls_score.weight",
        "proposal_generator.rpn_head.conv.weight",
        "backbone.res2.0.conv1.norm.num_batches_tracked",
    ]
    assert trunk_keys(names) == names[:2] + names[3:4]


@pytest.mark.slow
def test_weights_of_another_depth_are_refused(converted_r50, tmp_path) -> None:
    """A converted ResNet-50 for a ResNet-101 model: res4 blocks 6-22 would start from random."""
    from detection.config import load_config

    from detectron2.modeling import build_model

    for depth, fits in ((50, True), (101, False)):
        cfg = load_config(DEMO_CONFIG, ["MODEL.RESNETS.DEPTH", str(depth), "MODEL.DEVICE", "cpu"])
        ckpt = SafeCheckpointer(build_model(cfg), save_dir=str(tmp_path))
        if fits:
            ckpt.check_trunk_coverage(converted_r50)
        else:
            with pytest.raises(
                DetectionSetupError,
                match=r"leaves \d+ of the model's \d+ pretrained trunk parameters "
                r"unset \(e.g. backbone.bottom_up.res4.6.",
            ):
                ckpt.check_trunk_coverage(converted_r50)


def test_metrics_are_cut_back_to_the_checkpoint(tmp_path) -> None:
    from detection.run_folder import truncate_metrics

    lines = [json.dumps({"iteration": i, "loss": 1.0}) for i in range(10)] + ['{"iteration": 10, "lo']  # torn
    (tmp_path / "metrics.json").write_text("\n".join(lines))
    truncate_metrics(str(tmp_path), 5)
    kept = [json.loads(line)["iteration"] for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert kept == [0, 1, 2, 3, 4]
