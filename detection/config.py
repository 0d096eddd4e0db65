"""The keys this project adds to Detectron2's config, and loading a config with clear errors.

Everything else is Detectron2's own config (``detectron2.config.get_cfg``); the YAML files in
``configs/detection/`` are ordinary Detectron2 files with ``_BASE_`` inheritance.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import yaml

import detection  # noqa: F401  (restores the names Detectron2 0.6 needs before it is imported)
from salfmix.errors import DetectionSetupError

from detectron2.config import CfgNode, get_cfg

__all__ = ["add_salfmix_detection_config", "get_detection_cfg", "load_config", "resolve_seed"]


def add_salfmix_detection_config(cfg: CfgNode) -> None:
    """Add the ``SALFMIX.*`` keys to a Detectron2 config (in place), each with its default."""
    cfg.SALFMIX = CfgNode()
    # The backbone's pretraining method ("baseline", "cutmix", "hybridmix_v3", ...). Written to
    # OUTPUT_DIR/run_info.json; salfmix.cli.voc_report groups runs by it. "" = the run folder's name.
    cfg.SALFMIX.METHOD = ""
    # The backbone's pretraining errors: a JSON file with "top1_err" and "top5_err" (percent),
    # or a JSON-lines file (pretraining's metrics.jsonl) whose last record with both counts.
    # Copied to OUTPUT_DIR/pretrain_metrics.json so the report can put them beside the AP.
    cfg.SALFMIX.PRETRAIN_METRICS = ""
    # Add AP50 of every class ("AP50-<class>") to the VOC results and to eval_results.json.
    cfg.SALFMIX.PER_CLASS_AP = True
    # Refuse, before training, a MODEL.WEIGHTS that is neither a Detectron2 checkpoint nor a
    # complete converted ResNet-50 (Detectron2 itself would only warn and train from random),
    # or whose input layout contradicts INPUT.FORMAT / STRIDE_IN_1X1 (a Caffe2/MSRA BGR pickle
    # for an RGB config: Detectron2 would load it and train on swapped colour channels).
    cfg.SALFMIX.CHECK_WEIGHTS = True

    # Any VOC-format folder (Annotations/, ImageSets/Main/, JPEGImages/) with its own classes.
    # Registered as NAME_<split> for each split, e.g. "voc_demo_trainval" and "voc_demo_test",
    # so DATASETS.TRAIN/TEST can name them. Empty NAME: nothing is registered.
    cfg.SALFMIX.VOC_FOLDER = CfgNode()
    cfg.SALFMIX.VOC_FOLDER.NAME = ""
    cfg.SALFMIX.VOC_FOLDER.DIR = ""
    cfg.SALFMIX.VOC_FOLDER.SPLITS = ["trainval", "test"]
    # 2007 selects the VOC07 11-point AP in the evaluator, 2012 the area under the curve.
    cfg.SALFMIX.VOC_FOLDER.YEAR = 2007
    cfg.SALFMIX.VOC_FOLDER.CLASS_NAMES = []


def get_detection_cfg() -> CfgNode:
    """Detectron2's default config with the project's keys added."""
    cfg = get_cfg()
    add_salfmix_detection_config(cfg)
    return cfg


def _unknown_key(err: BaseException) -> str | None:
    match = re.search(r"Non-existent (?:config )?key: ([\w.]+)", str(err))
    return match.group(1) if match else None


def load_config(config_file: str, opts: Sequence[str] | None = None) -> CfgNode:
    """Merge ``config_file`` and ``KEY VALUE`` overrides into the project's config (not frozen).

    Every problem (missing file, bad YAML, unknown key, wrong type, odd override list) is a
    one-line :class:`DetectionSetupError` naming the file or key.
    """
    from salfmix.config_files import resolve

    cfg = get_detection_cfg()
    if not config_file:
        raise DetectionSetupError("--config-file: a config file is required (see configs/detection/)")
    config_file = resolve(config_file)  # a path, or a shipped config's name (detection/X.yaml)
    if not os.path.isfile(config_file):
        raise DetectionSetupError(f"{config_file}: config file not found")
    try:
        cfg.merge_from_file(config_file)
    except yaml.YAMLError as err:
        raise DetectionSetupError(f"{config_file}: not valid YAML ({' '.join(str(err).split())})") from None
    except FileNotFoundError as err:  # the file itself exists: one of its _BASE_ files does not
        raise DetectionSetupError(f"{config_file}: _BASE_ {err.filename}: config file not found") from None
    except (KeyError, AssertionError, ValueError, TypeError, OSError) as err:
        key = _unknown_key(err)
        if key:
            raise DetectionSetupError(
                f"{config_file}: unknown config key {key} (neither Detectron2's nor SALFMIX.*)"
            ) from None
        raise DetectionSetupError(f"{config_file}: {' '.join(str(err).split())}") from None
    opts = list(opts or [])
    if len(opts) % 2:
        raise DetectionSetupError(f"overrides must be KEY VALUE pairs, got an odd number: {opts}")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, AssertionError, ValueError, TypeError) as err:
        key = _unknown_key(err)
        if key:
            raise DetectionSetupError(
                f"override {key}: unknown config key (neither Detectron2's nor SALFMIX.*)"
            ) from None
        raise DetectionSetupError(f"overrides: {' '.join(str(err).split())}") from None
    return cfg


def resolve_seed(cfg: CfgNode) -> int:
    """Replace a negative ``SEED`` (Detectron2: "random") by a drawn one, so runs record it.

    Detectron2 seeds each process with ``SEED + rank``; with a negative seed it draws one but
    keeps it only in the log. Writing the drawn seed into the config puts it in the saved
    ``config.yaml`` and ``run_info.json``, so every run folder says which seed it used.
    """
    if cfg.SEED < 0:
        cfg.SEED = int.from_bytes(os.urandom(4), "little") % (2**31)
    return cfg.SEED
