"""Per-class AP50 on a case with a known answer, and the saved JSON."""

from __future__ import annotations

import json
import os

import pytest
import torch

import detection  # noqa: F401  (before Detectron2)
from detection.data import register_voc_folder
from detection.evaluation import PerClassVOCEvaluator, save_eval_results
from detection.voc_demo import write_voc_xml

from detectron2.structures import Boxes, Instances


@pytest.fixture
def known_voc(tmp_path) -> str:
    """Two images: image a has red and blue objects, image b a green and a blue one."""
    voc = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    write_voc_xml(
        str(voc / "Annotations" / "a.xml"), "a.jpg", 100, 100, [("red", 11, 11, 40, 40), ("blue", 51, 51, 90, 90)]
    )
    write_voc_xml(
        str(voc / "Annotations" / "b.xml"), "b.jpg", 100, 100, [("green", 11, 11, 30, 60), ("blue", 61, 11, 90, 40)]
    )
    (voc / "ImageSets" / "Main" / "test.txt").write_text("a\nb\n")
    register_voc_folder("test_known_ap", str(voc), "test", 2007, ["red", "green", "blue"])
    return str(voc)


def _output(boxes, scores, classes) -> dict:
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return {"instances": inst}


def test_per_class_ap50_known_answer(known_voc: str, tmp_path) -> None:
    evaluator = PerClassVOCEvaluator("test_known_ap")
    evaluator.reset()
    # Detectron2 coordinates: VOC (xmin, ymin) minus 1.
    # red: exact box -> AP50 100. green: nothing -> 0.
    # blue (2 objects): a false positive ranked above one true positive: precision 0.5 up to
    # recall 0.5 -> VOC07 11-point AP = 6 * 0.5 / 11.
    evaluator.process(
        [{"image_id": "a"}],
        [_output([[10, 10, 40, 40], [0, 0, 20, 20], [50, 50, 90, 90]], [0.9, 0.95, 0.8], [0, 2, 2])],
    )
    evaluator.process([{"image_id": "b"}], [_output([], [], [])])
    results = evaluator.evaluate()["bbox"]
    blue = 100 * 6 * 0.5 / 11
    assert results["AP50-red"] == pytest.approx(100.0)
    assert results["AP50-green"] == pytest.approx(0.0)
    assert results["AP50-blue"] == pytest.approx(blue)
    assert results["AP50"] == pytest.approx((100 + 0 + blue) / 3)  # the parent's mean agrees

    path = save_eval_results({"test_known_ap": {"bbox": results}}, str(tmp_path / "run"), iteration=None, max_iter=10)
    assert os.path.basename(path) == "eval_results.json"
    with open(path) as f:
        saved = json.load(f)
    entry = saved["datasets"]["test_known_ap"]
    assert entry["AP50"] == pytest.approx(results["AP50"]) and set(entry) == {"AP", "AP50", "AP75", "per_class_AP50"}
    assert entry["per_class_AP50"] == pytest.approx({"red": 100.0, "green": 0.0, "blue": blue})
    assert saved["iteration"] is None and saved["max_iter"] == 10
    assert os.listdir(tmp_path / "run") == ["eval_results.json"]  # no temporary file left


def test_per_class_can_be_switched_off(known_voc: str) -> None:
    evaluator = PerClassVOCEvaluator("test_known_ap", per_class=False)
    evaluator.reset()
    evaluator.process([{"image_id": "a"}], [_output([[10, 10, 40, 40]], [0.9], [0])])
    assert set(evaluator.evaluate()["bbox"]) == {"AP", "AP50", "AP75"}


def test_nan_becomes_null(tmp_path) -> None:
    path = save_eval_results({"x": {"bbox": {"AP": float("nan"), "AP50": 1.0, "AP75": 0.5}}}, str(tmp_path))
    with open(path) as f:
        assert json.load(f)["datasets"]["x"]["AP"] is None
