"""The files of a detection run folder (writes go through :mod:`salfmix.runs.files`, atomic and path first).

A run folder is Detectron2's ``OUTPUT_DIR``. Besides Detectron2's own files (``config.yaml``,
``log.txt``, ``metrics.json`` with the training events, ``model_final.pth``) and the run layer's
(``run.json``, ``run.lock``: see :mod:`detection.run_folder`), it holds:

- ``eval_results.json``: the latest VOC evaluation (written by the trainer);
- ``run_info.json``: ``method``, ``seed`` and how the run was made (written at start);
- ``pretrain_metrics.json``: ``top1_err``/``top5_err`` of the backbone (copied at start when
  ``SALFMIX.PRETRAIN_METRICS`` is set).
"""

from __future__ import annotations

__all__ = ["EVAL_RESULTS_FILE", "PRETRAIN_METRICS_FILE", "RUN_INFO_FILE"]

EVAL_RESULTS_FILE = "eval_results.json"
RUN_INFO_FILE = "run_info.json"
PRETRAIN_METRICS_FILE = "pretrain_metrics.json"
