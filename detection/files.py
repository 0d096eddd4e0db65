"""The files of a detection run folder, and atomic writes (a reader never sees half a file).

A run folder is Detectron2's ``OUTPUT_DIR``. Besides Detectron2's own files (``config.yaml``,
``log.txt``, ``metrics.json`` with the training events, ``model_final.pth``), it holds:

- ``eval_results.json``: the latest VOC evaluation (written by the trainer);
- ``run_info.json``: ``method``, ``seed`` and how the run was made (written at start);
- ``pretrain_metrics.json``: ``top1_err``/``top5_err`` of the backbone (copied at start when
  ``SALFMIX.PRETRAIN_METRICS`` is set).
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, IO

__all__ = [
    "EVAL_RESULTS_FILE",
    "PRETRAIN_METRICS_FILE",
    "RUN_INFO_FILE",
    "atomic_write",
    "write_json_atomic",
    "write_text_atomic",
]

EVAL_RESULTS_FILE = "eval_results.json"
RUN_INFO_FILE = "run_info.json"
PRETRAIN_METRICS_FILE = "pretrain_metrics.json"


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
        umask = os.umask(0)  # mkstemp makes 0600 files: give the mode open() would have given
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(obj: Any, path: str) -> None:
    """Write ``obj`` as indented JSON (NaN refused: JSON has none) atomically."""
    atomic_write(path, lambda f: (json.dump(obj, f, indent=2, allow_nan=False), f.write("\n")))


def write_text_atomic(text: str, path: str) -> None:
    """Write ``text`` atomically."""
    atomic_write(path, lambda f: f.write(text))
