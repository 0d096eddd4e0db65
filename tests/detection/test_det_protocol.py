"""The protocol label of a run: what it names, and Detectron2's GPU rescaling reproduced exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import detection  # noqa: F401  (before Detectron2)
import detection.roi_heads  # noqa: F401  (registers Res5ROIHeadsExtraNorm)
from detection.config import load_config
from detection.protocol import UNKNOWN, protocol_from_config, protocol_label, scaled_solver

from detectron2.engine import DefaultTrainer

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detection"
CONFIGS = sorted(CONFIG_DIR.glob("voc*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
@pytest.mark.parametrize("gpus", [1, 2, 3, 4, 8])
def test_scaling_matches_detectron2(path: Path, gpus: int) -> None:
    cfg = load_config(str(path))
    ours = scaled_solver(cfg.SOLVER, gpus)
    d2 = DefaultTrainer.auto_scale_workers(cfg, gpus).SOLVER
    assert (ours["batch"], ours["max_iter"], ours["steps"], ours["warmup"]) == (
        d2.IMS_PER_BATCH,
        d2.MAX_ITER,
        tuple(d2.STEPS),
        d2.WARMUP_ITERS,
    )
    assert ours["lr"] == d2.BASE_LR


def test_labels_tell_the_protocols_apart() -> None:
    paper = load_config(str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k.yaml"))
    syncbn = load_config(str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k_syncbn.yaml"))
    moco = load_config(str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k_moco.yaml"))
    assert protocol_label(paper, 4) == "R50-C4 FrozenBN freeze_at 2, batch 8, lr 0.02, 24000 iter (steps 18000, 22000)"
    assert protocol_label(syncbn, 4) == (
        "R50-C4+norm naiveSyncBN freeze_at 0 precise-BN, batch 8, lr 0.02, 24000 iter (steps 18000, 22000)"
    )
    # MoCo's file on 4 GPUs is another schedule; the paper's on 1 GPU another batch
    assert protocol_label(moco, 4).endswith("batch 8, lr 0.01, 48000 iter (steps 36000, 44000)")
    assert protocol_label(paper, 1).endswith("batch 2, lr 0.005, 96000 iter (steps 72000, 88000)")
    fpn = load_config(str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_FPN_24k.yaml"))
    assert protocol_label(fpn, 4).startswith("R50-FPN FrozenBN (FPN no norm) freeze_at 2,")


def test_label_from_a_saved_config(tmp_path) -> None:
    cfg = load_config(str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k_syncbn.yaml"))
    (tmp_path / "config.yaml").write_text(cfg.dump())
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert protocol_from_config(saved, 2) == protocol_label(cfg, 2)
    assert protocol_from_config(saved, None) == UNKNOWN  # rescaled by a world size nobody recorded
    assert protocol_from_config({"SALFMIX": {"METHOD": "cutmix"}}, 4) == UNKNOWN
    assert protocol_from_config({}, 4) == UNKNOWN
