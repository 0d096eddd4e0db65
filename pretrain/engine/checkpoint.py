"""Atomic checkpoints with every RNG state, and finding the newest one to resume from."""

from __future__ import annotations

import glob
import os
import random
import re
from typing import Any

import numpy as np
import torch

from salfmix.runs.files import atomic_torch_save, atomic_write_text

LAST = "last_checkpoint"


def rng_states() -> dict[str, Any]:
    """The global RNG states: python, numpy, torch CPU and every CUDA device."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint written after ``epoch``."""
    return f"model_epoch{epoch:04d}.pth"


def save_epoch_checkpoint(state: dict[str, Any], output_dir: str, epoch: int, keep: int) -> str:
    """Write the checkpoint of ``epoch``, point ``last_checkpoint`` at it, prune older ones.

    The older ones are removed only after the new one is complete, so a failed write (a full disk:
    :class:`salfmix.errors.WriteError`) leaves the last good checkpoint in place.
    """
    path = os.path.join(output_dir, epoch_checkpoint_name(epoch))
    atomic_torch_save(path, state)
    atomic_write_text(os.path.join(output_dir, LAST), os.path.basename(path))
    older = sorted(glob.glob(os.path.join(output_dir, "model_epoch*.pth")))
    for old in older[:-keep] if keep > 0 else []:
        os.remove(old)
    return path


def last_checkpoint(output_dir: str) -> str | None:
    """The checkpoint ``last_checkpoint`` names, else the newest ``model_epoch*.pth``, else None."""
    marker = os.path.join(output_dir, LAST)
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            path = os.path.join(output_dir, f.read().strip())
        if os.path.isfile(path):
            return path
    found = glob.glob(os.path.join(output_dir, "model_epoch*.pth"))
    numbered = [(int(re.findall(r"(\d+)", os.path.basename(p))[-1]), p) for p in found]
    return max(numbered)[1] if numbered else None


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load a training checkpoint written by :func:`save_epoch_checkpoint`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    for key in ("model", "optimizer", "epoch"):
        if key not in state:
            raise ValueError(f"{path}: not a training checkpoint (no {key!r} entry)")
    return state
