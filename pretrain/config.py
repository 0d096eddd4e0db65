"""The pretraining config tree: every key, its default and why, in one place.

Configs are YAML files that override these defaults, with ``_BASE_`` inheritance (fvcore's
``CfgNode``). ``load_config`` merges a file and ``KEY VALUE`` overrides, checks the result with
:func:`assert_cfg` and freezes it; the trainer saves it as ``OUTPUT_DIR/config.yaml``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fvcore.common.config import CfgNode

from salfmix.config_files import resolve

_C = CfgNode()

# Where checkpoints, metrics, TensorBoard events and the resolved config go.
_C.OUTPUT_DIR = "output/pretrain"
# Seeds every random stream (weights, data order, augmentation, mixing) of the run.
_C.SEED = 0

# ---------------------------------------------------------------------------------------------
_C.DATA = CfgNode()
# "tinyimagenet", "cifar10", "cifar100" or "fashion_mnist" (greyscale, replicated to 3 channels).
_C.DATA.NAME = "tinyimagenet"
# The dataset folder itself: ".../tiny-imagenet-200", ".../cifar-10-batches-py", ".../cifar-100-python",
# or the folder of Fashion-MNIST's four IDX files (the shipped configs: /usr/share/datasets/fashion-mnist,
# where Debian's dataset-fashion-mnist installs them).
_C.DATA.ROOT = ""
# Where the packed uint8 caches go; "" = next to the data if writable, else the user's cache dir.
_C.DATA.CACHE_DIR = ""
# Splits: TinyImageNet's labelled "val" serves as its test set (its "test" has no labels).
_C.DATA.TRAIN_SPLIT = "train"
_C.DATA.TEST_SPLIT = "val"
# Train on a stratified subset: this many images of each class (0 = the whole training split),
# drawn once with DATA.SUBSET_SEED. A seed of its own, so runs of different SEEDs train on the
# same images; the test split is always used whole.
_C.DATA.TRAIN_PER_CLASS = 0
_C.DATA.SUBSET_SEED = 0

# ---------------------------------------------------------------------------------------------
# Batched augmentation on the training device (paper section 5.1: random resized crop, flip and
# normalisation; colour jitter for TinyImageNet).
_C.AUG = CfgNode()
_C.AUG.SCALE = (0.08, 1.0)  # random resized crop: area fraction range
_C.AUG.RATIO = (3.0 / 4.0, 4.0 / 3.0)  # random resized crop: aspect-ratio range
_C.AUG.FLIP = True
_C.AUG.BRIGHTNESS = 0.0
_C.AUG.CONTRAST = 0.0
_C.AUG.SATURATION = 0.0
# torchvision's ImageNet statistics: the detection configs expect exactly these for ResNet-50.
_C.AUG.MEAN = (0.485, 0.456, 0.406)
_C.AUG.STD = (0.229, 0.224, 0.225)

# ---------------------------------------------------------------------------------------------
_C.MODEL = CfgNode()
# "resnet50" (torchvision layout, for detection transfer), "preactresnet18/50/101" (CIFAR style),
# "pyramidnet110" (alpha 64) / "pyramidnet110_a48" (the paper's Table 6; see pretrain/models/pyramidnet.py).
# "regnetx_200m": RegNet-200M of Table 6 (CIFAR layout; see pretrain/models/regnet.py).
# "resnet20": He et al.'s CIFAR ResNet-20 (0.27 M parameters; the Fashion-MNIST configs).
_C.MODEL.ARCH = "resnet50"
# Side of the training/test input; the images are resized on the device (0 = the data's own size).
# With the ImageNet stem a 64 px image ends at 2x2 in the last stage; the shipped TinyImageNet
# ResNet-50 configs train at 64 (the paper's setting) - raise it to trade speed for resolution.
_C.MODEL.INPUT_SIZE = 0
# channels_last memory format (faster convolutions on recent GPUs).
_C.MODEL.CHANNELS_LAST = True

# ---------------------------------------------------------------------------------------------
_C.MIX = CfgNode()
# Any name of pretrain.mixing.MIXERS.
_C.MIX.METHOD = "none"
# First epoch (1-based) with mixing. 0 = the method's own rule, written into the saved config:
# 2 for SalfMix, HybridMix and the paper's SalfMix ablations (Algorithm 2: the saliency of an
# untrained net is noise), 1 for the baselines (their official code mixes from the first epoch).
_C.MIX.START_EPOCH = 0
# Where saliency comes from: "fresh" (one gradient_saliency pass per step) or "cached" (our
# addition: each sample's pooled map from its previous visit, taken from the training
# backward's input gradient; no extra pass).
_C.MIX.SALIENCY = "fresh"
# SalfMix / HybridMix / Cutout-with-saliency: pooled grid n and patch ratio r.
_C.MIX.N = 8
_C.MIX.R = 0.3
# Each method's own hyperparameters: one node per method, MIX.<NAME> (the name in capitals), one
# key per argument its class lists in ``config_args``, defaulting to its constructor's default;
# built from the registry by add_mixing_config below, documented in the method's module. E.g.
# MIX.CUTMIX.BETA / PROB / PER_SAMPLE (CutMix official: PROB 0.5 on CIFAR, 1.0 on ImageNet),
# MIX.MIXUP.ALPHA, MIX.SALIENCYMIX.MODE, MIX.CUTOUT.SIZE, MIX.RESIZEMIX.SCALE,
# MIX.HYBRIDMIX_V3.PER_PAIR / PARTNER / BETA / PROB, MIX.PUZZLEMIX.ALPHA ...

# ---------------------------------------------------------------------------------------------
_C.SOLVER = CfgNode()
_C.SOLVER.MAX_EPOCHS = 300
# Total batch over all processes (each process takes BATCH_SIZE / world size).
_C.SOLVER.BATCH_SIZE = 128
_C.SOLVER.BASE_LR = 0.05
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.WEIGHT_DECAY = 1e-4
_C.SOLVER.NESTEROV = False
# "step": x GAMMA after each epoch in STEPS (the paper's recipe); "cosine": cosine annealing
# from BASE_LR to 0 over MAX_EPOCHS, stepped per epoch (RegNet-200M's source code).
_C.SOLVER.LR_SCHEDULE = "step"
# Epochs after which the learning rate is multiplied by GAMMA ("step" only).
_C.SOLVER.STEPS = (75, 150, 225)
_C.SOLVER.GAMMA = 0.1

# ---------------------------------------------------------------------------------------------
_C.TRAIN = CfgNode()
# "bf16" autocast on GPU ("none" for fp32); ignored on the CPU, which trains in fp32.
_C.TRAIN.AMP = "bf16"
# Save a checkpoint every this many epochs (the last epoch always).
_C.TRAIN.CHECKPOINT_PERIOD = 1
# How many periodic checkpoints to keep (older ones are deleted; model_final.pth stays).
_C.TRAIN.KEEP_CHECKPOINTS = 2
# Evaluate on the test split every this many epochs (the last epoch always).
_C.TRAIN.EVAL_PERIOD = 1
# Show a progress bar (rank 0 only).
_C.TRAIN.PROGRESS = True
# Read the step's loss and non-finite flags (kept on the device) every this many steps and at the
# end of each epoch: the only host synchronisation of the steady-state step, and (under DDP) the
# only collective besides DDP's gradient all-reduce. A NaN / Inf loss and a stop signal are acted
# on at the next read, so within this many steps. 20: about one read per 0.1-1 s of a GPU step.
_C.TRAIN.LOG_PERIOD = 20
# torch.compile the model and the mixer's device work (Mixer.apply, fullgraph). Off until a GPU has
# measured what it gains (docs/BENCHMARKS.md); on the CPU compiling costs more than it saves.
_C.TRAIN.COMPILE = False

_C.TEST = CfgNode()
# Total evaluation batch size.
_C.TEST.BATCH_SIZE = 256
# Also evaluate the training images (unaugmented, unmixed, eval mode) whenever the test split is:
# train_top1_err / train_eval_loss in metrics.jsonl show how far the model has fit its own data
# (the memorising regime of docs/RESULTS.md), beside train_loss, the mean objective of the epoch.
_C.TEST.TRAIN_SET = False


def add_mixing_config(cfg: CfgNode) -> None:
    """Add the node ``MIX.<NAME>`` of every registered mixing method (see the MIX comments)."""
    from pretrain.mixing import MIXERS

    for name, cls in MIXERS.items():
        defaults = cls.config_defaults()
        if defaults:
            cfg.MIX[name.upper()] = CfgNode(
                {arg.upper(): tuple(v) if isinstance(v, list) else v for arg, v in defaults.items()}
            )


add_mixing_config(_C)

# Keys of the former flat MIX tree, now in each method's node: named in the error of a config that sets one.
MOVED_KEYS = {
    "MIX.BETA": "BETA (ALPHA for Mixup, HybridMix v1, PuzzleMix)",
    "MIX.PROB": "PROB",
    "MIX.PER_SAMPLE": "PER_SAMPLE",
    "MIX.PER_PAIR": "PER_PAIR",
    "MIX.PARTNER": "PARTNER",
    "MIX.SALIENCYMIX_MODE": "MODE",
    "MIX.CUTOUT_SIZE": "SIZE",
    "MIX.RESIZEMIX_SCALE": "SCALE",
}

AMP_MODES = ("none", "bf16")
LR_SCHEDULES = ("step", "cosine")
SALIENCY_SOURCES = ("fresh", "cached")


def get_cfg_defaults() -> CfgNode:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()


def assert_cfg(cfg: CfgNode) -> None:
    """Check values the YAML types alone cannot; raises ValueError naming the key."""
    from pretrain.data.sources import NAMES as DATASETS
    from pretrain.mixing import MIXERS
    from pretrain.models import ARCHS

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            value = cfg
            for part in key.split("."):
                value = value[part]
            raise ValueError(f"{key}: expected {what}, got {value!r}")

    need(cfg.DATA.NAME in DATASETS, "DATA.NAME", f"one of {DATASETS}")
    need(bool(cfg.DATA.ROOT), "DATA.ROOT", "the dataset folder (e.g. .../tiny-imagenet-200)")
    need(cfg.DATA.TRAIN_PER_CLASS >= 0, "DATA.TRAIN_PER_CLASS", "images per class >= 0 (0 = all)")
    need(cfg.MODEL.ARCH in ARCHS, "MODEL.ARCH", f"one of {tuple(ARCHS)}")
    need(cfg.MODEL.INPUT_SIZE >= 0, "MODEL.INPUT_SIZE", "a side >= 0 (0 = the data's own size)")
    need(cfg.MIX.METHOD in MIXERS, "MIX.METHOD", f"one of {tuple(MIXERS)}")
    need(cfg.MIX.SALIENCY in SALIENCY_SOURCES, "MIX.SALIENCY", f"one of {SALIENCY_SOURCES}")
    need(cfg.MIX.START_EPOCH >= 0, "MIX.START_EPOCH", "an epoch >= 1 (0 = the method's own rule)")
    need(cfg.SOLVER.MAX_EPOCHS >= 1, "SOLVER.MAX_EPOCHS", "at least 1")
    need(cfg.SOLVER.BATCH_SIZE >= 1, "SOLVER.BATCH_SIZE", "at least 1")
    need(cfg.SOLVER.BASE_LR > 0, "SOLVER.BASE_LR", "a learning rate > 0")
    need(list(cfg.SOLVER.STEPS) == sorted(cfg.SOLVER.STEPS), "SOLVER.STEPS", "increasing epochs")
    need(cfg.SOLVER.LR_SCHEDULE in LR_SCHEDULES, "SOLVER.LR_SCHEDULE", f"one of {LR_SCHEDULES}")
    need(cfg.TRAIN.AMP in AMP_MODES, "TRAIN.AMP", f"one of {AMP_MODES}")
    need(cfg.TRAIN.CHECKPOINT_PERIOD >= 1, "TRAIN.CHECKPOINT_PERIOD", "at least 1")
    need(cfg.TRAIN.EVAL_PERIOD >= 1, "TRAIN.EVAL_PERIOD", "at least 1")
    need(cfg.TRAIN.LOG_PERIOD >= 1, "TRAIN.LOG_PERIOD", "at least 1")
    need(len(cfg.AUG.MEAN) == 3 and len(cfg.AUG.STD) == 3, "AUG.MEAN", "3 values (and 3 for AUG.STD)")


def _explain(err: Exception) -> str:
    """One line for a merge error; yacs reports unknown keys as 'Non-existent (config) key: K'."""
    text = " ".join(str(err.args[0] if isinstance(err, KeyError) and err.args else err).split())
    if "Non-existent" in text:
        key = text.rsplit(":", 1)[-1].strip()
        if key in MOVED_KEYS:
            return (
                f"unknown config key {key}: each method's hyperparameters are in its own node now, "
                f"MIX.<METHOD>.{MOVED_KEYS[key]} (e.g. MIX.CUTMIX.PROB)"
            )
        return f"unknown config key {key}"
    return text


def load_config(config_file: str | None = None, opts: list[str] | None = None) -> CfgNode:
    """Defaults, merged with ``config_file`` (a path, or a shipped config's name such as
    ``pretrain/Base-Demo-R50.yaml``; ``_BASE_`` chains allowed) and ``KEY VALUE`` opts, checked
    and frozen. An unknown key or a malformed file raises ValueError naming it."""
    cfg = get_cfg_defaults()
    if config_file:
        config_file = resolve(config_file)  # a path, or a shipped config's name (pretrain/X.yaml)
        try:
            cfg.merge_from_file(config_file)
        except FileNotFoundError as err:
            missing = err.filename
            if missing and os.path.abspath(missing) != os.path.abspath(config_file):  # a _BASE_ of the file
                raise FileNotFoundError(f"{config_file}: _BASE_ {missing}: config file not found") from None
            raise FileNotFoundError(f"{config_file}: config file not found") from None
        except Exception as err:  # unknown keys, YAML syntax errors, type mismatches
            raise ValueError(f"{config_file}: {_explain(err)}") from None
    if opts:
        if len(opts) % 2:
            raise ValueError(f"overrides: expected KEY VALUE pairs, got an odd list {opts}")
        try:
            cfg.merge_from_list(list(opts))
        except Exception as err:
            raise ValueError(f"overrides: {_explain(err)}") from None
    assert_cfg(cfg)
    resolve_method_defaults(cfg)
    if cfg.MIX.METHOD != "none" and cfg.MIX.START_EPOCH > cfg.SOLVER.MAX_EPOCHS:
        # the run would be labelled with the method and train the baseline
        raise ValueError(
            f"MIX.START_EPOCH: {cfg.MIX.METHOD} mixes from epoch {cfg.MIX.START_EPOCH} but "
            f"SOLVER.MAX_EPOCHS is {cfg.SOLVER.MAX_EPOCHS}: the run would never mix; train longer, set "
            "MIX.START_EPOCH (e.g. 1), or MIX.METHOD none"
        )
    cfg.freeze()
    return cfg


def config_sets(config_file: str, key: str) -> object | None:
    """The value a config file (or one of its ``_BASE_`` files) sets for the dotted ``key``, None
    if none of them sets it (the tree's default then applies): tells a base config, which leaves
    ``MIX.METHOD`` to the command, from a leaf that trains one method."""
    import yaml

    path, seen = resolve(config_file), set()
    while path and os.path.isfile(path) and path not in seen:
        seen.add(path)
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        value: object = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
        base = data.get("_BASE_") if isinstance(data, dict) else None
        path = os.path.join(os.path.dirname(path), base) if base else None
    return None


#: In a config path, stands for the method: ``my_configs/{method}.yaml`` is a leaf per method.
METHOD_FIELD = "{method}"


def method_config(config: str, method: str, opts: Sequence[str] = ()) -> tuple[str, list[str]]:
    """The config file and the ``KEY VALUE`` overrides that train ``method`` (the one resolver of
    the pipeline and the studies).

    ``config`` is a base config (it sets no ``MIX.METHOD``: ``MIX.METHOD method`` is added after
    ``opts``), a leaf of that very method, or a path with ``{method}`` (a leaf per method); a path
    or a shipped name (``pretrain/Base-CIFAR10-PreAct18.yaml``). Raises FileNotFoundError or
    ValueError naming the file when the result would not train ``method``.
    """
    path = resolve(config.replace(METHOD_FIELD, method))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: config file not found" + (f" (no config for method {method!r})" if METHOD_FIELD in config else "")
        )
    set_method = config_sets(path, "MIX.METHOD") is None
    keys = list(opts)[::2]
    if set_method and "MIX.METHOD" in keys:
        raise ValueError(
            f"the overrides set MIX.METHOD {list(opts)[keys.index('MIX.METHOD') * 2 + 1]}; it is set "
            f"from the method ({method}): remove it from the overrides"
        )
    extra = list(opts) + (["MIX.METHOD", method] if set_method else [])
    trained = load_config(path, extra).MIX.METHOD
    if trained != method:
        raise ValueError(
            f"{path}{' with the overrides' if opts else ''} trains MIX.METHOD {trained}, not {method}; "
            f"the run would be labelled {method} but train {trained}. Use a base config, which sets no "
            "MIX.METHOD (e.g. pretrain/Base-TinyImageNet-R50.yaml)"
        )
    return path, extra


def resolve_method_defaults(cfg: CfgNode) -> None:
    """Replace the "method's own rule" values (MIX.START_EPOCH 0) by what the method declares,
    so that the saved config says what ran."""
    from pretrain.mixing import MIXERS

    if cfg.MIX.START_EPOCH == 0:
        cfg.MIX.START_EPOCH = MIXERS[cfg.MIX.METHOD].start_epoch
