"""Count, on the CPU, every point where a CUDA run would make the host wait for the device.

A GPU step is fast only if the host can queue work ahead of the device: any read of a device
value on the host (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``, ``.cpu()``), any
blocking host-to-device copy (``torch.tensor(..., device=)``, ``.to(device)`` without
``non_blocking``) and any operation whose output shape depends on device data (``nonzero``,
boolean-mask indexing, ``masked_select``, ``unique``) stalls it. Without a GPU we cannot time
that, but we can count it: :func:`emulated_device` makes tensors on an emulated device (they
report the ``meta`` device and hold CPU data, so every op runs on the CPU as usual) and records
each such point with the project source line that caused it.

Usage::

    with emulated_device() as emu:
        x = emu.device_tensor(torch.randn(4))     # or build a model with device=emu.device
        y = (x * 2).sum()
        float(y)                                  # recorded: "item" at <file>:<line>
    print(emu.count(), emu.summary())

The emulation is for counting, not for speed (every op goes through Python), and it does not
model CUDA semantics beyond the synchronisation points: a plain CPU tensor meeting an emulated
one in an op is recorded as ``mixed devices`` (CUDA would refuse it, except 0-dim CPU scalars).
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

EMULATED = torch.device("meta")

aten = torch.ops.aten
_DATA_DEPENDENT = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
    aten.argwhere.default,
}
_COPIES = {aten._to_copy.default, aten.copy_.default}

# Frames from these folders name a sync's source line (the first one from the innermost frame).
_OWN = tuple(os.sep + name + os.sep for name in ("pretrain", "detection", "salfmix", "tests"))


@dataclass
class Sync:
    """One recorded synchronisation point: its kind and the source line that caused it."""

    kind: str
    where: str


def _caller() -> str:
    stack = traceback.extract_stack()[:-1]
    for frame in reversed(stack):
        if any(part in frame.filename for part in _OWN) and not frame.filename.endswith("emulated_device.py"):
            return f"{os.path.relpath(frame.filename)}:{frame.lineno}"
    return f"{stack[-1].filename}:{stack[-1].lineno}" if stack else "?"


class EmulatedTensor(torch.Tensor):
    """A tensor on the emulated device: reports :data:`EMULATED`, holds a CPU tensor."""

    recorder: Emulation | None = None  # the active emulation (one at a time)

    @staticmethod
    def __new__(cls, data: torch.Tensor) -> EmulatedTensor:
        out = torch.Tensor._make_wrapper_subclass(
            cls,
            data.shape,
            strides=data.stride(),
            dtype=data.dtype,
            device=EMULATED,
            requires_grad=data.requires_grad,
            storage_offset=data.storage_offset(),
        )
        out.host = data
        return out

    def __repr__(self) -> str:  # printing must not count as a read of the device
        return f"EmulatedTensor(shape={tuple(self.shape)}, dtype={self.dtype})"

    def tolist(self) -> Any:
        _record("tolist")
        return self.host.tolist()

    def numpy(self, *args: Any, **kwargs: Any) -> Any:
        _record("numpy")
        return self.host.numpy(*args, **kwargs)

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return _run(func, args, kwargs or {})


def _record(kind: str) -> None:
    if EmulatedTensor.recorder is not None:
        EmulatedTensor.recorder.syncs.append(Sync(kind, _caller()))


def _unwrap(x: Any) -> Any:
    if isinstance(x, EmulatedTensor):
        return x.host
    if isinstance(x, torch.device) and x.type == EMULATED.type:
        return torch.device("cpu")
    return x


def _wrap(x: Any) -> Any:
    return EmulatedTensor(x) if isinstance(x, torch.Tensor) and not isinstance(x, EmulatedTensor) else x


def _targets_emulated(kwargs: dict) -> bool:
    device = kwargs.get("device")
    return isinstance(device, torch.device) and device.type == EMULATED.type


def _run(func: Any, args: tuple, kwargs: dict) -> Any:
    flat, _ = tree_flatten((args, kwargs))
    emulated = [t for t in flat if isinstance(t, EmulatedTensor)]
    plain = [t for t in flat if isinstance(t, torch.Tensor) and not isinstance(t, EmulatedTensor)]
    if func is aten._local_scalar_dense.default:
        _record("item")
        return func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
    if func in _DATA_DEPENDENT or (
        func is aten.index.Tensor
        and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []))
    ):
        _record(f"data-dependent shape ({func.__name__.split('.')[0]})")
    if func in _COPIES:
        source = args[1] if func is aten.copy_.default else args[0]
        to_host = (
            func is aten._to_copy.default
            and not _targets_emulated(kwargs)
            and "device" in kwargs
            and kwargs["device"] is not None
        )
        if isinstance(source, EmulatedTensor) and (
            to_host or (func is aten.copy_.default and not isinstance(args[0], EmulatedTensor))
        ):
            _record("device-to-host copy")
            out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
            return out
        if not isinstance(source, EmulatedTensor) and (_targets_emulated(kwargs) or emulated):
            if not kwargs.get("non_blocking", False) and (func is aten._to_copy.default or source.numel() > 1):
                _record("blocking host-to-device copy")
            out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
            return tree_map(_wrap, out) if func is aten._to_copy.default else args[0]
    elif emulated and any(t.dim() > 0 for t in plain):
        _record(f"mixed devices ({func.__name__.split('.')[0]})")
    out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
    if emulated or _targets_emulated(kwargs):
        if func is aten.copy_.default:  # in place into an emulated tensor: return it
            return args[0]
        return tree_map(_wrap, out)
    return out


class _FactoryMode(TorchDispatchMode):
    """Factories asked for the emulated device (``torch.zeros(..., device=)``) and copies of
    plain tensors to it go through :func:`_run`."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        if _targets_emulated(kwargs) or any(isinstance(t, EmulatedTensor) for t in flat):
            return _run(func, args, kwargs)
        return func(*args, **kwargs)


@dataclass
class Emulation:
    """The active emulation: its device and what it recorded."""

    syncs: list[Sync] = field(default_factory=list)
    device: torch.device = EMULATED

    def device_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """A copy of the CPU tensor ``t`` on the emulated device (not counted)."""
        return EmulatedTensor(t.detach().clone()).requires_grad_(t.requires_grad)

    def reset(self) -> None:
        """Forget what was recorded so far (e.g. after a warm-up step)."""
        self.syncs.clear()

    def count(self) -> int:
        """How many synchronisation points were recorded."""
        return len(self.syncs)

    def summary(self, limit: int = 12) -> str:
        """The recorded points by kind and source line, most frequent first."""
        counts = Counter((s.kind, s.where) for s in self.syncs)
        return "; ".join(f"{n}x {kind} at {where}" for (kind, where), n in counts.most_common(limit)) or "none"


@contextlib.contextmanager
def emulated_device() -> Iterator[Emulation]:
    """Emulate a CUDA device on the CPU inside the block (see the module docstring)."""
    if EmulatedTensor.recorder is not None:
        raise RuntimeError("emulated_device: already active")
    emulation = Emulation()
    real_tensor = torch.tensor

    def tensor(data: Any, *args: Any, device: Any = None, **kwargs: Any) -> torch.Tensor:
        # torch.tensor(data, device=) copies host data to the device and waits for it; it does not
        # reach the dispatcher as a copy, so it is caught here.
        if device is not None and torch.device(device).type == EMULATED.type:
            _record("torch.tensor(..., device=)")
            return EmulatedTensor(real_tensor(data, *args, **kwargs))
        return real_tensor(data, *args, device=device, **kwargs)

    EmulatedTensor.recorder = emulation
    torch.tensor = tensor
    try:
        with _FactoryMode():
            yield emulation
    finally:
        torch.tensor = real_tensor
        EmulatedTensor.recorder = None


def count_syncs(fn: Callable[[], Any], warmup: Callable[[], Any] = lambda: None) -> tuple[int, str]:
    """``(count, summary)`` of the synchronisation points of ``fn()`` under the emulation, after
    ``warmup()`` (whose own points are not counted)."""
    with emulated_device() as emu:
        warmup()
        emu.reset()
        fn()
        return emu.count(), emu.summary()


__all__ = ["EMULATED", "Emulation", "EmulatedTensor", "Sync", "count_syncs", "emulated_device"]
