"""torchvision ResNet-50 weights -> Detectron2 backbone weights, and checks of weights files.

The renaming follows the convention of MoCo's ``convert-pretrain-to-detectron2.py`` (names
outside ``layerN`` get the ``stem.`` prefix, ``layer1..4 -> res2..5``, ``bnK -> convK.norm``,
``downsample.0/1 -> shortcut / shortcut.norm``). Two deliberate differences:

- coverage is checked here: Detectron2's loader only warns about missing or unexpected keys and
  silently skips shape mismatches, so an incomplete checkpoint would otherwise train with a
  partly random backbone;
- ``num_batches_tracked`` counters are dropped with the classifier: Detectron2's FrozenBN and
  GroupNorm have no such buffer, and its BatchNorm uses a fixed momentum, so the counter is
  never read.
"""
from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from detection.errors import DetectionSetupError
from detection.files import atomic_write

__all__ = [
    "AUTHOR",
    "RESNET50_BLOCKS",
    "check_detection_weights",
    "convert_state_dict",
    "expected_resnet50_shapes",
    "extract_state_dict",
    "rename_key",
    "write_detectron2_pickle",
]

# Written in the pickle's "__author__"; check_detection_weights recognises our own files by it.
AUTHOR = "salfmix torchvision-to-detectron2 converter"
RESNET50_BLOCKS = (3, 4, 6, 3)
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def expected_resnet50_shapes() -> "OrderedDict[str, Tuple[int, ...]]":
    """Every backbone tensor of torchvision's ResNet-50 (no ``fc``) and its shape."""
    shapes: "OrderedDict[str, Tuple[int, ...]]" = OrderedDict()

    def conv_bn(conv: str, bn: str, out_c: int, in_c: int, k: int) -> None:
        shapes[f"{conv}.weight"] = (out_c, in_c, k, k)
        for t in _BN_TENSORS:
            shapes[f"{bn}.{t}"] = (out_c,)

    conv_bn("conv1", "bn1", 64, 3, 7)
    in_c = 64
    for stage, blocks in enumerate(RESNET50_BLOCKS, start=1):
        width = 64 * 2 ** (stage - 1)
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            conv_bn(f"{p}.conv1", f"{p}.bn1", width, in_c, 1)
            conv_bn(f"{p}.conv2", f"{p}.bn2", width, width, 3)
            conv_bn(f"{p}.conv3", f"{p}.bn3", 4 * width, width, 1)
            if b == 0:
                conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", 4 * width, in_c, 1)
            in_c = 4 * width
    return shapes


def rename_key(name: str) -> str:
    """The Detectron2 name of a torchvision ResNet backbone tensor."""
    if not name.startswith("layer"):
        name = "stem." + name
    name = re.sub(r"^layer([1-4])\.", lambda m: f"res{int(m.group(1)) + 1}.", name)
    name = re.sub(r"\bbn([1-3])\.", r"conv\1.norm.", name)
    name = name.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
    return name


def _strip_prefix(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    # DistributedDataParallel saves every key under "module.".
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor; bfloat16/float16 have no numpy float32 view
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    # a copy: the converted dict must not share memory with the caller's tensors
    return np.array(value, dtype=np.float32 if np.asarray(value).dtype.kind == "f" else None, copy=True)


def _group(name: str) -> str:
    return name.split(".")[0] if name.startswith("layer") else "stem"


def _coverage_error(missing: List[str], expected: Mapping[str, Tuple[int, ...]]) -> str:
    per_group: Dict[str, List[str]] = OrderedDict()
    for k in missing:
        per_group.setdefault(_group(k), []).append(k)
    parts = []
    for group, keys in per_group.items():
        total = sum(1 for k in expected if _group(k) == group)
        what = f"all {total} tensors" if len(keys) == total else f"{len(keys)} of {total} tensors"
        parts.append(f"{group} ({what}, e.g. {keys[0]})")
    return "not a complete ResNet-50 backbone: missing " + "; ".join(parts)


def convert_state_dict(state_dict: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """Rename a torchvision ResNet-50 state dict to Detectron2's backbone names.

    Values become numpy arrays (floats as float32); ``fc.*`` (the classifier) and
    ``num_batches_tracked`` are dropped; a ``module.`` prefix on every key is removed.
    Raises :class:`DetectionSetupError` (a ValueError) naming what is missing, misshapen or
    unexpected when the input is not a complete torchvision ResNet-50 backbone.
    """
    state = _strip_prefix(state_dict)
    backbone = {
        k: v
        for k, v in state.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    expected = expected_resnet50_shapes()
    missing = [k for k in expected if k not in backbone]
    if missing:
        raise DetectionSetupError(_coverage_error(missing, expected))
    unexpected = sorted(k for k in backbone if k not in expected)
    if unexpected:
        hint = " (a deeper ResNet?)" if any(re.match(r"layer[1-4]\.\d+\.", k) for k in unexpected) else ""
        raise DetectionSetupError(
            f"not a torchvision ResNet-50 backbone: {len(unexpected)} unexpected tensors{hint}, "
            f"e.g. {', '.join(unexpected[:3])}"
        )
    converted: Dict[str, np.ndarray] = OrderedDict()
    for name, shape in expected.items():
        arr = _as_numpy(backbone[name])
        if tuple(arr.shape) != shape:
            hint = " (a 3x3 CIFAR-style stem cannot be converted)" if name == "conv1.weight" else ""
            raise DetectionSetupError(
                f"{name}: shape {tuple(arr.shape)}, expected {shape} for ResNet-50{hint}"
            )
        converted[rename_key(name)] = arr
    return converted


def extract_state_dict(obj: Any, source: str = "checkpoint") -> Dict[str, Any]:
    """The torchvision state dict inside a loaded checkpoint object.

    Accepts our pretraining checkpoints (a dict whose ``model`` entry is the state dict), a
    ``{"state_dict": ...}`` dict and a plain state dict; ``source`` names the file in errors.
    """
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(hasattr(v, "shape") for v in obj.values()):
        raise DetectionSetupError(
            f"{source}: expected a state dict or a dict with a 'model' state dict of tensors"
        )
    return dict(obj)


def write_detectron2_pickle(model: Mapping[str, np.ndarray], path: str) -> None:
    """Write Detectron2's pickle format atomically: no file at ``path`` unless it is complete."""
    if not path.endswith(".pkl"):
        raise DetectionSetupError(f"{path}: the output must end with .pkl (Detectron2 reads pickles by extension)")
    payload = {"model": dict(model), "__author__": AUTHOR, "matching_heuristics": True}
    atomic_write(path, lambda f: pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL), binary=True)


# --- what MODEL.WEIGHTS may be ---------------------------------------------------------------

_TORCHVISION_HINT = re.compile(r"^(module\.)?(conv1|bn1|layer[1-4]\.|fc\.)")
_D2_BACKBONE = re.compile(r"^(stem\.|res[2-5]\.)")
_CAFFE2_NAME = re.compile(r"^(conv1_w|res_conv1_bn_s|res[2-5]_\d+_branch)")


def _load_pickle(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as err:  # corrupt pickles fail in many ways
        raise DetectionSetupError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None


def _load_torch(path: str) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DetectionSetupError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__})") from None


def check_detection_weights(path: str) -> str:
    """Check that ``path`` can initialise a Detectron2 model; return what it is, in words.

    Accepted: our converted pickles (coverage checked again), other Detectron2-format pickles
    (model zoo, Caffe2/MSRA ``R-50.pkl``) and Detectron2 ``.pth`` checkpoints (a ``model`` dict
    of Detectron2 names, e.g. a finished run for ``--eval-only``). Refused, with a one-line
    error: a torchvision ``.pth`` (Detectron2 would load none of it and train from random
    weights), an incomplete converted backbone, and anything else. Remote URLs are not checked.
    """
    if "://" in path:
        return "a remote file (not checked)"
    if not os.path.isfile(path):
        raise DetectionSetupError(f"MODEL.WEIGHTS {path}: file not found")
    if path.endswith(".pkl"):
        data = _load_pickle(path)
        if not isinstance(data, dict):
            raise DetectionSetupError(f"{path}: expected a dict in the pickle, got {type(data).__name__}")
        if data.get("__author__") == AUTHOR:
            model = data.get("model")
            if not isinstance(model, dict):
                raise DetectionSetupError(f"{path}: converted file without a 'model' dict")
            _check_converted(model, path)
            return "a converted torchvision ResNet-50"
        inner = data.get("model", data.get("blobs", data))
        names = [str(k) for k in inner] if isinstance(inner, dict) else []
        if any(_D2_BACKBONE.match(k) or k.startswith("backbone.") for k in names):
            return f"a Detectron2 pickle ({data.get('__author__', 'no author')})"
        if any(_CAFFE2_NAME.match(k) for k in names):
            return "a Caffe2/Detectron pickle"
        raise DetectionSetupError(
            f"{path}: neither a Detectron2 pickle nor a converted ResNet-50 (keys like {names[:2]})"
        )
    data = _load_torch(path)
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state:
        raise DetectionSetupError(f"{path}: expected a Detectron2 checkpoint with a 'model' dict")
    names = list(state)
    if any(k.startswith(("backbone.", "roi_heads.", "proposal_generator.")) for k in names):
        return "a Detectron2 checkpoint"
    if sum(bool(_TORCHVISION_HINT.match(k)) for k in names) > len(names) // 2:
        raise DetectionSetupError(
            f"{path}: a torchvision checkpoint, which Detectron2 cannot load; "
            "convert it first with tools/convert_to_detectron2.py IN OUT.pkl"
        )
    raise DetectionSetupError(
        f"{path}: neither a Detectron2 checkpoint nor a converted ResNet-50 (keys like {names[:2]})"
    )


def _check_converted(model: Mapping[str, Any], path: str) -> None:
    expected = {rename_key(k): v for k, v in expected_resnet50_shapes().items()}
    missing = [k for k in expected if k not in model]
    if missing:
        raise DetectionSetupError(
            f"{path}: incomplete converted backbone, missing {len(missing)} tensors, e.g. {missing[0]}"
        )
    for k, shape in expected.items():
        if tuple(np.shape(model[k])) != shape:
            raise DetectionSetupError(f"{path}: {k} has shape {tuple(np.shape(model[k]))}, expected {shape}")
