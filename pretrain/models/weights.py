"""Reading classifier checkpoints: ours (``{"model": state_dict, ...}``), plain state dicts,
and DDP-wrapped ones (keys prefixed ``module.``)."""

from __future__ import annotations

import torch
import torchvision


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The model state dict stored in ``path``, with any ``module.`` prefix removed."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint not found") from None
    except Exception as err:  # unpickling errors come in many types
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from None
    state = obj.get("model", obj.get("state_dict", obj)) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict or a dict with a 'model' state dict")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def load_resnet50(path: str | None = None, num_classes: int = 200) -> torch.nn.Module:
    """torchvision's ResNet-50, randomly initialised or loaded from ``path``.

    The number of classes is read from the checkpoint's ``fc.weight`` when there is one.
    """
    if path is None:
        return torchvision.models.resnet50(num_classes=num_classes)
    state = read_state_dict(path)
    if "fc.weight" in state:
        num_classes = state["fc.weight"].shape[0]
    model = torchvision.models.resnet50(num_classes=num_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # missing/unexpected keys or shape mismatches
        detail = " ".join(str(err).split())[:300]
        raise ValueError(f"{path}: not a torchvision ResNet-50 checkpoint ({detail})") from None
    return model
