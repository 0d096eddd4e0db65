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

import logging
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from salfmix.errors import DetectionSetupError
from salfmix.runs.files import atomic_write

__all__ = [
    "AUTHOR",
    "CAFFE2_LAYOUT",
    "RESNET50_BLOCKS",
    "TORCHVISION_LAYOUT",
    "check_detection_weights",
    "convert_state_dict",
    "expected_resnet50_shapes",
    "extract_state_dict",
    "read_checkpoint",
    "rename_key",
    "write_detectron2_pickle",
]

# Written in the pickle's "__author__"; check_detection_weights recognises our own files by it.
AUTHOR = "salfmix torchvision-to-detectron2 converter"
RESNET50_BLOCKS = (3, 4, 6, 3)
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def expected_resnet50_shapes() -> OrderedDict[str, tuple[int, ...]]:
    """Every backbone tensor of torchvision's ResNet-50 (no ``fc``) and its shape."""
    shapes: OrderedDict[str, tuple[int, ...]] = OrderedDict()

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


def _strip_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    # DistributedDataParallel saves every key under "module.".
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
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


def _coverage_error(missing: list[str], expected: Mapping[str, tuple[int, ...]]) -> str:
    per_group: dict[str, list[str]] = OrderedDict()
    for k in missing:
        per_group.setdefault(_group(k), []).append(k)
    parts = []
    for group, keys in per_group.items():
        total = sum(1 for k in expected if _group(k) == group)
        what = f"all {total} tensors" if len(keys) == total else f"{len(keys)} of {total} tensors"
        parts.append(f"{group} ({what}, e.g. {keys[0]})")
    return "not a complete ResNet-50 backbone: missing " + "; ".join(parts)


def convert_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Rename a torchvision ResNet-50 state dict to Detectron2's backbone names.

    Values become numpy arrays (floats as float32); ``fc.*`` (the classifier) and
    ``num_batches_tracked`` are dropped; a ``module.`` prefix on every key is removed.
    Raises :class:`DetectionSetupError` (a ValueError) naming what is missing, misshapen or
    unexpected when the input is not a complete torchvision ResNet-50 backbone.
    """
    state = _strip_prefix(state_dict)
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
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
    converted: dict[str, np.ndarray] = OrderedDict()
    for name, shape in expected.items():
        arr = _as_numpy(backbone[name])
        if tuple(arr.shape) != shape:
            hint = " (a 3x3 CIFAR-style stem cannot be converted)" if name == "conv1.weight" else ""
            raise DetectionSetupError(f"{name}: shape {tuple(arr.shape)}, expected {shape} for ResNet-50{hint}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():  # a diverged run: refuse, do not pass it on
            bad = int(arr.size - np.isfinite(arr).sum())
            raise DetectionSetupError(f"{name}: {bad} of {arr.size} values are NaN or infinite; not converted")
        converted[rename_key(name)] = arr
    return converted


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, Any]:
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
        raise DetectionSetupError(f"{source}: expected a state dict or a dict with a 'model' state dict of tensors")
    return dict(obj)


def _numpy_globals() -> list[Any]:
    """The numpy types inside our training checkpoints (RNG states), safe for ``weights_only`` loading."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return [np.dtype, np.ndarray, _reconstruct, *{type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64)}]


def read_checkpoint(path: str) -> tuple[dict[str, Any], str | None]:
    """The torchvision state dict in the checkpoint file ``path``, and a note when it is not final.

    Loads with ``weights_only=True`` (no code runs), allowing the numpy types of the RNG states
    that our ``model_epochNNNN.pth`` training checkpoints hold besides the weights. For such a
    checkpoint the note says which epoch it is (an intermediate one, not ``model_final.pth``).
    """
    import torch
    import yaml

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling fails in many ways
        raise DetectionSetupError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__})") from None
    note = None
    if isinstance(obj, Mapping) and "optimizer" in obj and isinstance(obj.get("epoch"), int):
        try:
            total = (yaml.safe_load(obj.get("cfg") or "") or {}).get("SOLVER", {}).get("MAX_EPOCHS")
        except (yaml.YAMLError, AttributeError):
            total = None
        of = f" of {total}" if isinstance(total, int) else ""
        note = (
            f"{path} is the training checkpoint of epoch {obj['epoch']}{of}, not a finished model_final.pth: "
            "converting the weights of that intermediate epoch"
        )
    return extract_state_dict(obj, path), note


def write_detectron2_pickle(model: Mapping[str, np.ndarray], path: str) -> None:
    """Write Detectron2's pickle format atomically: no file at ``path`` unless it is complete."""
    if not path.endswith(".pkl"):
        raise DetectionSetupError(f"{path}: the output must end with .pkl (Detectron2 reads pickles by extension)")
    payload = {"model": dict(model), "__author__": AUTHOR, "matching_heuristics": True}
    atomic_write(path, lambda f: pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL))


# --- what MODEL.WEIGHTS may be ---------------------------------------------------------------

_TORCHVISION_HINT = re.compile(r"^(module\.)?(conv1|bn1|layer[1-4]\.|fc\.)")
_D2_BACKBONE = re.compile(r"^(stem\.|res[2-5]\.)")
_CAFFE2_NAME = re.compile(r"^(conv1_w|res_conv1_bn_[sb]|res[2-5]_\d+_branch)")

# Two input conventions of ResNet weights. torchvision: RGB, ImageNet mean/std, stride in the
# 3x3 conv (the configs in configs/detection). Caffe2 (Detectron's models, Detectron2's
# ImageNetPretrained/MSRA and FAIR): BGR, Caffe2 means with std 1; MSRA's stride in the 1x1 conv.
TORCHVISION_LAYOUT = "torchvision"
CAFFE2_LAYOUT = "Caffe2/MSRA"
# "__author__" of Detectron2 pickles known to hold a torchvision-layout backbone: ours, Detectron2's
# tools/convert-torchvision-to-d2.py and MoCo's convert-pretrain-to-detectron2.py.
_TORCHVISION_AUTHORS = (AUTHOR, "torchvision", "MOCO")
_REMOTE_LAYOUTS = (
    ("ImageNetPretrained/MSRA/", CAFFE2_LAYOUT),
    ("ImageNetPretrained/FAIR/", CAFFE2_LAYOUT),
    ("ImageNetPretrained/torchvision/", TORCHVISION_LAYOUT),
)


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


def _most(names: list[str], pattern: re.Pattern[str]) -> bool:
    return bool(names) and sum(bool(pattern.match(k)) for k in names) * 2 > len(names)


def _classify_pickle(data: Any, path: str) -> tuple[str, str | None]:
    """(what the pickle is, its input layout or None when the file does not say)."""
    if not isinstance(data, dict):
        raise DetectionSetupError(f"{path}: expected a dict in the pickle, got {type(data).__name__}")
    author = data.get("__author__")
    if author == AUTHOR:
        model = data.get("model")
        if not isinstance(model, dict):
            raise DetectionSetupError(f"{path}: converted file without a 'model' dict")
        _check_converted(model, path)
        return "a converted torchvision ResNet-50", TORCHVISION_LAYOUT
    # Detectron2 reads a pickle with both "model" and "__author__" as its own format and any
    # other pickle as a Caffe2 one ("blobs" in detection models, a flat dict in ImageNet ones).
    d2_format = "model" in data and author is not None
    inner = data["model"] if d2_format else data.get("blobs", data)
    names = [str(k) for k in inner if not str(k).endswith("_momentum")] if isinstance(inner, dict) else []
    if _most(names, _CAFFE2_NAME) or (not d2_format and any(_CAFFE2_NAME.match(k) for k in names)):
        # Caffe2 blob names: Detectron's and the MSRA ImageNet models, all BGR with std 1
        return "a Caffe2/MSRA pickle", CAFFE2_LAYOUT
    if any(_D2_BACKBONE.match(k) or k.startswith("backbone.") for k in names):
        if author in _TORCHVISION_AUTHORS:
            return f"a Detectron2 pickle ({author}, torchvision layout)", TORCHVISION_LAYOUT
        return f"a Detectron2 pickle ({author or 'no author'})", None
    raise DetectionSetupError(f"{path}: neither a Detectron2 pickle nor a converted ResNet-50 (keys like {names[:2]})")


def _check_layout(path: str, what: str, layout: str | None, input_format: str, stride_in_1x1: bool) -> None:
    """Refuse weights whose input convention differs from the config's; warn when unknown."""
    if layout is None:
        logging.getLogger(__name__).warning(
            "MODEL.WEIGHTS %s: %s does not say which input it was trained on; check that INPUT.FORMAT "
            "%s, MODEL.PIXEL_MEAN/PIXEL_STD and MODEL.RESNETS.STRIDE_IN_1X1 %s match it",
            path,
            what,
            input_format,
            stride_in_1x1,
        )
        return
    if layout == TORCHVISION_LAYOUT and (input_format, stride_in_1x1) != ("RGB", False):
        expects = "RGB input with ImageNet mean/std and STRIDE_IN_1X1 False"
        fix = "use the configs in configs/detection"
    elif layout == CAFFE2_LAYOUT and input_format != "BGR":
        # MSRA's ResNets also have their stride in the 1x1 conv; FAIR's Caffe2 ResNeXts do not
        expects = "BGR input with Caffe2 means and std 1; MSRA ResNets with STRIDE_IN_1X1 True"
        fix = (
            "convert a torchvision ResNet-50 with salfmix.cli.convert_to_detectron2, or use a config for Caffe2 weights"
        )
    else:
        return
    raise DetectionSetupError(
        f"MODEL.WEIGHTS {path}: {what} ({layout} layout: {expects}), but the config has "
        f"INPUT.FORMAT {input_format} and MODEL.RESNETS.STRIDE_IN_1X1 {stride_in_1x1}; {fix} "
        "(SALFMIX.CHECK_WEIGHTS False skips this check)"
    )


def check_detection_weights(path: str, input_format: str | None = None, stride_in_1x1: bool | None = None) -> str:
    """Check that ``path`` can initialise a Detectron2 model; return what it is, in words.

    Accepted: our converted pickles (coverage checked again), other Detectron2-format pickles
    and Caffe2/MSRA pickles (e.g. the model zoo's ``R-50.pkl``), and Detectron2 ``.pth``
    checkpoints (a ``model`` dict of Detectron2 names, e.g. a finished run for ``--eval-only``).
    Refused, with a one-line error: a torchvision ``.pth`` (Detectron2 would load none of it and
    train from random weights), an incomplete converted backbone, and anything else.

    With ``input_format`` and ``stride_in_1x1`` (the config's ``INPUT.FORMAT`` and
    ``MODEL.RESNETS.STRIDE_IN_1X1``), weights whose input convention is known are also checked
    against the config: a Caffe2/MSRA pickle (BGR; recognised by its Caffe2 blob names, which
    our converter never writes, or by its model-zoo URL) is refused unless ``INPUT.FORMAT`` is
    BGR, so never for the RGB torchvision-layout configs, and a torchvision-layout pickle (ours,
    Detectron2's or MoCo's converter, by ``__author__``) unless the config is RGB with
    ``STRIDE_IN_1X1`` False. A Detectron2 pickle that does not say is accepted with a
    warning. Remote URLs are not opened; the model zoo's are recognised by their path.
    """
    layout: str | None = None
    if "://" in path:
        what = "a remote file (not checked)"
        layout = next((lay for part, lay in _REMOTE_LAYOUTS if part in path), None)
        if layout is not None:
            what = f"a remote model-zoo file ({layout} layout, not opened)"
        elif input_format is not None:
            return what  # nothing known to compare
    elif not os.path.isfile(path):
        raise DetectionSetupError(f"MODEL.WEIGHTS {path}: file not found")
    elif path.endswith(".pkl"):
        what, layout = _classify_pickle(_load_pickle(path), path)
    else:
        what = _classify_torch(_load_torch(path), path)
        if input_format is not None:
            return what  # a Detectron2 run's checkpoint: it was trained with some config
    if input_format is not None:
        _check_layout(path, what, layout, input_format, bool(stride_in_1x1))
    return what


def _classify_torch(data: Any, path: str) -> str:
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state:
        raise DetectionSetupError(f"{path}: expected a Detectron2 checkpoint with a 'model' dict")
    names = list(state)
    if any(k.startswith(("backbone.", "roi_heads.", "proposal_generator.")) for k in names):
        return "a Detectron2 checkpoint"
    if sum(bool(_TORCHVISION_HINT.match(k)) for k in names) > len(names) // 2:
        raise DetectionSetupError(
            f"{path}: a torchvision checkpoint, which Detectron2 cannot load; "
            "convert it first with salfmix.cli.convert_to_detectron2 IN OUT.pkl"
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
