"""Every YAML in configs/detection loads and builds; the protocols say what they should; errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import detection  # noqa: F401  (before Detectron2)
import detection.roi_heads  # noqa: F401  (registers Res5ROIHeadsExtraNorm)
from detection.config import load_config, resolve_seed
from salfmix.errors import DetectionSetupError

from detectron2.engine import DefaultTrainer

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detection"
DEMO_CONFIG = CONFIG_DIR / "voc_demo_faster_rcnn_R_50_FPN_cpu.yaml"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
TORCHVISION_MEAN = [123.675, 116.280, 103.530]
TORCHVISION_STD = [58.395, 57.120, 57.375]


def test_there_are_configs() -> None:
    names = {p.name for p in CONFIGS}
    assert {
        "voc0712_faster_rcnn_R_50_C4_24k.yaml",
        "voc0712_faster_rcnn_R_50_C4_24k_moco.yaml",
        "voc0712_faster_rcnn_R_50_C4_24k_syncbn.yaml",
        DEMO_CONFIG.name,
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_builds_and_is_torchvision_style(path) -> None:
    from detectron2.modeling import build_model

    cfg = load_config(str(path), ["MODEL.DEVICE", "cpu"])
    assert cfg.INPUT.FORMAT == "RGB"
    assert cfg.MODEL.PIXEL_MEAN == pytest.approx(TORCHVISION_MEAN)
    assert cfg.MODEL.PIXEL_STD == pytest.approx(TORCHVISION_STD)
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False and cfg.MODEL.RESNETS.DEPTH == 50
    if "SyncBN" in cfg.MODEL.RESNETS.NORM:
        cfg.MODEL.RESNETS.NORM = cfg.MODEL.FPN.NORM = "BN"  # same parameters; no process group here
    model = build_model(cfg)
    assert model.roi_heads.__class__.__name__ == cfg.MODEL.ROI_HEADS.NAME


def test_paper_protocol_and_its_rescaling() -> None:
    cfg = load_config(str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k.yaml"))
    s = cfg.SOLVER
    assert (s.IMS_PER_BATCH, s.BASE_LR, tuple(s.STEPS), s.MAX_ITER, s.REFERENCE_WORLD_SIZE) == (
        8,
        0.02,
        (18000, 22000),
        24000,
        4,
    )
    assert cfg.DATASETS.TRAIN == ("voc_2007_trainval", "voc_2012_trainval") and cfg.DATASETS.TEST == ("voc_2007_test",)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 20 and cfg.MODEL.BACKBONE.NAME == "build_resnet_backbone"
    two = DefaultTrainer.auto_scale_workers(cfg, 2).SOLVER  # on 2 GPUs: same per-GPU batch
    assert (two.IMS_PER_BATCH, two.BASE_LR, tuple(two.STEPS), two.MAX_ITER) == (4, 0.01, (36000, 44000), 48000)


def test_moco_protocol() -> None:
    cfg = load_config(str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k_moco.yaml"))
    assert cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm"
    assert "SyncBN" in cfg.MODEL.RESNETS.NORM and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.REFERENCE_WORLD_SIZE, cfg.SOLVER.WARMUP_ITERS) == (16, 8, 100)
    assert cfg.INPUT.MIN_SIZE_TRAIN == tuple(range(480, 801, 32)) and cfg.INPUT.MIN_SIZE_TEST == 800


@pytest.mark.parametrize(
    "gpus, batch, lr, steps, max_iter, warmup",
    [
        (1, 2, 0.005, (72000, 88000), 96000, 400),
        (2, 4, 0.01, (36000, 44000), 48000, 200),
        (4, 8, 0.02, (18000, 22000), 24000, 100),
        (8, 16, 0.04, (9000, 11000), 12000, 50),
    ],
)
def test_syncbn_protocol_is_the_paper_schedule_with_moco_bn(gpus, batch, lr, steps, max_iter, warmup) -> None:
    cfg = load_config(str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k_syncbn.yaml"))
    moco = load_config(str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k_moco.yaml"))
    # MoCo's Base-RCNN-C4-BN.yaml: naiveSyncBN, FREEZE_AT 0, the extra res5 norm, precise BN
    for key in (
        "MODEL.RESNETS.NORM",
        "MODEL.BACKBONE.FREEZE_AT",
        "MODEL.ROI_HEADS.NAME",
        "TEST.PRECISE_BN.ENABLED",
        "INPUT.MIN_SIZE_TRAIN",
        "INPUT.MIN_SIZE_TEST",
        "SOLVER.WARMUP_ITERS",
        "MODEL.RPN.PRE_NMS_TOPK_TEST",
    ):
        a, b = cfg, moco
        for part in key.split("."):
            a, b = a[part], b[part]
        assert a == b, key
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.BACKBONE.FREEZE_AT) == ("naiveSyncBN", 0)
    assert cfg.SOLVER.REFERENCE_WORLD_SIZE == 4 and cfg.SOLVER.IMS_PER_BATCH == 8
    s = DefaultTrainer.auto_scale_workers(cfg, gpus).SOLVER
    assert (s.IMS_PER_BATCH, tuple(s.STEPS), s.MAX_ITER, s.WARMUP_ITERS) == (batch, steps, max_iter, warmup)
    assert s.BASE_LR == pytest.approx(lr) and s.IMS_PER_BATCH // gpus == 2  # 2 images per GPU throughout


def test_extra_norm_head_has_moco_layout() -> None:
    from detectron2.modeling import build_model

    cfg = load_config(
        str(CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k_moco.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.NORM", "BN"],
    )
    names = list(build_model(cfg).roi_heads.res5._modules)
    assert names == ["0", "1", "2", "norm"]


def test_unknown_keys_and_bad_files_are_one_line_errors(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k.yaml"}"\nSOLVER:\n  MAX_ITERS: 10\n')
    with pytest.raises(DetectionSetupError, match=r"bad\.yaml: unknown config key SOLVER\.MAX_ITERS"):
        load_config(str(bad))
    with pytest.raises(DetectionSetupError, match=r"override SALFMIX\.METHD: unknown config key"):
        load_config(str(DEMO_CONFIG), ["SALFMIX.METHD", "cutmix"])
    with pytest.raises(DetectionSetupError, match="odd number"):
        load_config(str(DEMO_CONFIG), ["SEED"])
    with pytest.raises(DetectionSetupError, match="config file not found"):
        load_config(str(tmp_path / "none.yaml"))
    (tmp_path / "broken.yaml").write_text("MODEL: [\n")
    with pytest.raises(DetectionSetupError, match=r"broken\.yaml: not valid YAML"):
        load_config(str(tmp_path / "broken.yaml"))
    with pytest.raises(DetectionSetupError, match=r"SOLVER\.IMS_PER_BATCH"):
        load_config(str(DEMO_CONFIG), ["SOLVER.IMS_PER_BATCH", "'many'"])


def test_negative_seed_is_drawn_and_recorded() -> None:
    cfg = load_config(str(DEMO_CONFIG), ["SEED", "-1"])
    seed = resolve_seed(cfg)
    assert seed >= 0 and cfg.SEED == seed
    cfg.SEED = 7
    assert resolve_seed(cfg) == 7
