"""VOC evaluation: Detectron2's PascalVOCDetectionEvaluator plus per-class AP50, saved as JSON.

AP, AP50 and AP75 are exactly what ``PascalVOCDetectionEvaluator`` returns (VOC07 11-point AP
for year 2007, mean over IoU 0.50:0.05:0.95 for AP; difficult objects ignored). Per-class AP50
is computed with Detectron2's own ``voc_eval`` on the same gathered detections, so the mean of
the per-class values is the evaluator's AP50.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from typing import Any

import detection  # noqa: F401  (restores the names Detectron2 0.6 needs before it is imported)
from detection.files import EVAL_RESULTS_FILE
from salfmix.runs.files import atomic_write_json

from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.evaluation import pascal_voc_evaluation as d2_voc
from detectron2.utils import comm

__all__ = ["PER_CLASS_PREFIX", "PerClassVOCEvaluator", "save_eval_results"]

PER_CLASS_PREFIX = "AP50-"


class PerClassVOCEvaluator(PascalVOCDetectionEvaluator):
    """``PascalVOCDetectionEvaluator`` whose ``bbox`` results add ``AP50-<class>`` entries.

    The entries are plain floats so that Detectron2's EvalHook logs them like COCO's per-category
    APs. Like its parent, ``evaluate`` must be called on every rank.
    """

    def __init__(self, dataset_name: str, per_class: bool = True) -> None:
        super().__init__(dataset_name)
        self._per_class = per_class

    def evaluate(self) -> dict[str, dict[str, float]] | None:
        # Gather before the parent does (it keeps the merged detections to itself); both
        # gathers are collective, and every rank runs them in the same order.
        gathered = comm.gather(self._predictions, dst=0) if self._per_class else None
        results = super().evaluate()
        if not comm.is_main_process() or not self._per_class:
            return results
        merged = defaultdict(list)
        for per_rank in gathered:
            for cls_id, lines in per_rank.items():
                merged[cls_id].extend(lines)
        bbox = results["bbox"]
        for name, ap50 in self.per_class_ap50(merged).items():
            bbox[PER_CLASS_PREFIX + name] = ap50
        return results

    def per_class_ap50(self, predictions: Mapping[int, list]) -> OrderedDict[str, float]:
        """AP50 (percent) of every class from detection lines in the parent's format."""
        out: OrderedDict[str, float] = OrderedDict()
        with tempfile.TemporaryDirectory(prefix="voc_per_class_") as dirname:
            template = os.path.join(dirname, "{}.txt")
            for cls_id, cls_name in enumerate(self._class_names):
                with open(template.format(cls_name), "w") as f:
                    f.write("\n".join(predictions.get(cls_id, [""])))
                _, _, ap = d2_voc.voc_eval(
                    template,
                    self._anno_file_template,
                    self._image_set_path,
                    cls_name,
                    ovthresh=0.5,
                    use_07_metric=self._is_2007,
                )
                out[cls_name] = float(ap * 100)
        return out


def _finite(value: Any) -> Any:
    # JSON has no NaN: a class without ground truth gives NaN AP; store null instead.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_eval_results(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    output_dir: str,
    iteration: int | None = None,
    max_iter: int | None = None,
    weights: str | None = None,
) -> str:
    """Write ``OUTPUT_DIR/eval_results.json``; return its path.

    ``results`` maps dataset name -> Detectron2 results (``{"bbox": {"AP": ..., ...}}``).
    Layout: ``{"iteration", "max_iter", "weights", "datasets": {name: {"AP", "AP50", "AP75",
    "per_class_AP50": {class: AP50}}}}``; ``iteration`` is null for ``--eval-only``, ``weights``
    the absolute path of the weights evaluated (the model being trained: null).
    """
    datasets = {}
    for name, res in results.items():
        bbox = dict(res.get("bbox", {}))
        per_class = {
            k[len(PER_CLASS_PREFIX) :]: _finite(float(v)) for k, v in bbox.items() if k.startswith(PER_CLASS_PREFIX)
        }
        entry = {k: _finite(float(bbox[k])) for k in ("AP", "AP50", "AP75") if k in bbox}
        if per_class:
            entry["per_class_AP50"] = per_class
        datasets[name] = entry
    path = os.path.join(output_dir, EVAL_RESULTS_FILE)
    atomic_write_json(
        path,
        {
            "iteration": iteration,
            "max_iter": max_iter,
            "weights": os.path.abspath(weights) if weights else None,
            "datasets": datasets,
        },
    )
    return path
