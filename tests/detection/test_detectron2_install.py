"""Detectron2 0.6 with current NumPy/Pillow: the compat module, the install script's
checks, and a Faster R-CNN R50-FPN (PascalVOC model-zoo config) forward pass on the CPU."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import detection  # noqa: F401  (restores the names Detectron2 needs before it is imported)
from detection import compat

REPO_ROOT = Path(__file__).resolve().parents[2]
NEEDS_D2 = pytest.mark.skipif(
    importlib.util.find_spec("detectron2") is None,
    reason="Detectron2 is not installed: run tools/install_detectron2.py",
)


def _load_install_script() -> types.ModuleType:
    import salfmix.install.detectron2 as module

    return module


# --- (a) compat -------------------------------------------------------------------------


def test_compat_names_present_after_import() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy FutureWarning on access
        assert np.str is str
        assert np.int is int
        assert np.float is float
        assert np.bool in (bool, np.bool_)
        assert PIL.Image.LINEAR == PIL.Image.BILINEAR


def test_compat_never_overwrites_existing_names() -> None:
    # Names the libraries still define keep their own objects.
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        assert np.bool is np.bool_  # NumPy 2 defines it again: must not become builtins.bool
    sentinel = object()
    fake = types.ModuleType("fake")
    fake.kept = sentinel
    added = compat.restore(fake, {"kept": 1, "missing": 2})
    assert added == ["missing"]
    assert fake.kept is sentinel and fake.missing == 2


def test_compat_is_idempotent() -> None:
    before = (np.str, np.int, np.float, np.bool, PIL.Image.LINEAR)
    fake = types.ModuleType("fake")
    assert compat.restore(fake, {"a": 1}) == ["a"]
    assert compat.restore(fake, {"a": 2}) == [] and fake.a == 1
    reloaded = importlib.reload(compat)
    assert reloaded.RESTORED == []  # everything was already in place
    assert (np.str, np.int, np.float, np.bool, PIL.Image.LINEAR) == before


def test_compat_handles_module_getattr_that_warns() -> None:
    # NumPy's module __getattr__ warns and raises for its removed aliases.
    fake = types.ModuleType("fake")

    def _getattr(name: str) -> object:
        warnings.warn(f"{name} was removed", FutureWarning, stacklevel=2)
        raise AttributeError(name)

    fake.__getattr__ = _getattr  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compat.restore(fake, {"str": str}) == ["str"]
    assert fake.str is str


# --- (d) install script helpers (no network) --------------------------------------------


def test_importing_detectron2_prints_no_jit_deprecation() -> None:
    """Detectron2 0.6's import-time torch.jit.script calls printed a FutureWarning in the middle
    of every tool's output; after ``import detection`` that message is silenced."""
    import subprocess

    code = "import detection, detectron2.modeling, detectron2.data"
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch.jit.script" not in proc.stderr


def test_install_script_refuses_wrong_sha256(tmp_path: Path) -> None:
    script = _load_install_script()
    fake = tmp_path / script.SDIST_NAME
    fake.write_bytes(b"not the detectron2 sdist")
    with pytest.raises(script.InstallError) as err:
        script.verify_sha256(fake)
    message = str(err.value)
    assert "refusing" in message and script.SDIST_SHA256 in message and "\n" not in message
    script.verify_sha256(fake, hashlib.sha256(b"not the detectron2 sdist").hexdigest())
    assert script.main(script.get_parser().parse_args(["--force", "--sdist", str(fake)])) == 1


def test_install_script_patches_source_tree(tmp_path: Path) -> None:
    script = _load_install_script()
    config = tmp_path / "detectron2" / "model_zoo" / "configs" / script.CHECK_CONFIG
    config.parent.mkdir(parents=True)
    config.write_text("_BASE_: x\n")
    for _ in range(2):  # idempotent
        script.patch_source(tmp_path)
    cpp = (tmp_path / "detectron2" / "layers" / "csrc" / "vision.cpp").read_text()
    for name in ("get_compiler_version", "get_cuda_version", "has_cuda", "PYBIND11_MODULE"):
        assert name in cpp
    assert (tmp_path / "configs" / script.CHECK_CONFIG).is_file()
    assert not (tmp_path / "detectron2" / "model_zoo" / "configs").exists()


# --- (b) Faster R-CNN R50-FPN on the CPU --------------------------------------------------


@NEEDS_D2
def test_faster_rcnn_r50_fpn_voc_forward_cpu() -> None:
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 64
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 20

    torch.manual_seed(0)
    model = build_model(cfg)
    size = 96
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8).float()
    instances = Instances((size, size))
    instances.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 60.0, 70.0], [40.0, 30.0, 90.0, 88.0]]))
    instances.gt_classes = torch.tensor([3, 14])

    model.train()
    with EventStorage(0):  # the training forward logs proposal statistics to it
        losses = model([{"image": image, "height": size, "width": size, "instances": instances}])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    total = sum(losses.values())
    assert math.isfinite(float(total.detach()))
    total.backward()

    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 2 * size, "width": 2 * size}])
    pred = out["instances"]
    assert pred.image_size == (2 * size, 2 * size)
    assert pred.pred_boxes.tensor.shape[1] == 4
    assert len(pred.scores) == len(pred.pred_classes) <= cfg.TEST.DETECTIONS_PER_IMAGE
    assert torch.isfinite(pred.pred_boxes.tensor).all()


# --- (c) VOC evaluator and loader (use the restored names) ---------------------------------


VOC_XML = """<annotation><size><width>64</width><height>48</height></size>
<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
<bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
</annotation>"""


@NEEDS_D2
def test_pascal_voc_evaluator_and_loader(tmp_path: Path) -> None:
    from detectron2.data.datasets.pascal_voc import load_voc_instances
    from detectron2.evaluation import PascalVOCDetectionEvaluator  # noqa: F401
    from detectron2.evaluation.pascal_voc_evaluation import voc_eval

    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "Annotations" / "000001.xml").write_text(VOC_XML.format(name="dog"))
    (tmp_path / "Annotations" / "000002.xml").write_text(VOC_XML.format(name="cat"))
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n")

    records = load_voc_instances(str(tmp_path), "test", ["cat", "dog"])  # np.loadtxt(np.str)
    assert [r["annotations"][0]["category_id"] for r in records] == [1, 0]

    det = tmp_path / "dets_{}.txt"
    Path(str(det).format("dog")).write_text("000001 0.9 5 6 30 40\n")
    rec, prec, ap = voc_eval(  # "difficult" flags use np.bool
        str(det),
        str(tmp_path / "Annotations" / "{}.xml"),
        str(tmp_path / "ImageSets" / "Main" / "test.txt"),
        "dog",
        ovthresh=0.5,
        use_07_metric=True,
    )
    assert ap == pytest.approx(1.0)


@NEEDS_D2
def test_detectron2_data_imports_with_restored_pillow_name() -> None:
    # ExtentTransform's default argument is Image.LINEAR, evaluated at import time.
    from detectron2.data.transforms import ExtentTransform

    assert ExtentTransform(src_rect=(0, 0, 8, 8), output_size=(4, 4)).interp == PIL.Image.BILINEAR
    assert "detectron2" in sys.modules
