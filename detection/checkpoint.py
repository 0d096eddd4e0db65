"""Detectron2's checkpointer with the run layer's guarantees: atomic saves, a resume that falls back
to the newest intact checkpoint, and initial weights that must fit the model.

- **Atomic saves.** Detectron2 writes ``model_NNNNNNN.pth`` and ``last_checkpoint`` in place: a
  process killed while saving leaves a truncated checkpoint (seen: 73 of 165 MB) that the next
  resume loads. Here both are written to a temp file and renamed (:mod:`salfmix.runs.files`).
- **Resume.** A ``last_checkpoint`` that names a missing, empty or unreadable file (a run killed
  by an older version, a disk that filled up) does not end the resume with a traceback: the
  newest ``model_*.pth`` that loads is used instead, and the log says which and why.
- **Initial weights.** Detectron2 only warns when ``MODEL.WEIGHTS`` leaves parameters of the
  model unset (a converted ResNet-50 loaded into a ResNet-101 config trains with res4 blocks
  6-22 random, and the run is labelled with the pretraining method). Loading ``MODEL.WEIGHTS``
  for a new run here refuses weights that leave any parameter of the pretrained trunk (stem,
  res2-res5, wherever the config puts them) unset, naming how many and an example.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from typing import Any

import torch

import detection  # noqa: F401  (before Detectron2)
from salfmix.errors import DetectionSetupError
from salfmix.runs.files import atomic_torch_save, atomic_write_text

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["SafeCheckpointer", "trunk_keys"]

# Parameters of the ImageNet-pretrained trunk in Detectron2's ResNet models: the stem and the
# stages res2..res5 (res5 sits in roi_heads for C4 models, in the backbone for FPN ones).
_TRUNK = re.compile(r"(^|\.)(stem|res[2-5])\.")
_NUMBERED = re.compile(r"model_(\d+)\.pth$")


def trunk_keys(names: list[str]) -> list[str]:
    """The names of ``names`` that belong to the pretrained trunk (not FPN, RPN or box heads)."""
    return [n for n in names if _TRUNK.search(n) and ".fpn_" not in n and not n.endswith("num_batches_tracked")]


class SafeCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with the three guarantees of the module docstring."""

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data: dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        atomic_torch_save(path, data)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def _readable(self, path: str) -> str | None:
        """None if ``path`` loads as a checkpoint, else why not."""
        if not os.path.isfile(path):
            return "missing"
        if os.path.getsize(path) == 0:
            return "empty"
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # a truncated zip, a torn pickle
            return f"unreadable ({type(err).__name__})"
        return None if isinstance(data, dict) and "model" in data else "not a checkpoint"

    def get_checkpoint_file(self) -> str:
        named = super().get_checkpoint_file()
        candidates = [named] if named else []
        numbered = sorted(
            glob.glob(os.path.join(self.save_dir, "model_*.pth")),
            key=lambda p: int(_NUMBERED.search(p).group(1)) if _NUMBERED.search(p) else -1,
            reverse=True,
        )
        candidates += [p for p in numbered if _NUMBERED.search(p) and p != named]
        for path in candidates:
            why = self._readable(path)
            if why is None:
                if path != named:
                    logging.getLogger("detectron2").warning(
                        f"last_checkpoint names {named or 'nothing'} ({self._readable(named) if named else 'empty'}): "
                        f"resuming from {path}, the newest intact checkpoint"
                    )
                return path
        return named

    def has_checkpoint(self) -> bool:
        if super().has_checkpoint():
            return True
        return any(_NUMBERED.search(p) for p in glob.glob(os.path.join(self.save_dir or "", "model_*.pth")))

    def check_trunk_coverage(self, weights: str) -> None:
        """Load ``weights`` as initial weights only to find the trunk parameters it leaves unset;
        raise :class:`DetectionSetupError` naming them (nothing is kept loaded)."""
        checkpoint = self._load_file(weights)
        model_keys = list(self.model.state_dict())
        if checkpoint.get("matching_heuristics", False):
            from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

            self._convert_ndarray_to_tensor(checkpoint["model"])
            loaded = align_and_update_state_dicts(
                self.model.state_dict(),
                checkpoint["model"],
                c2_conversion=checkpoint.get("__author__", None) == "Caffe2",
            )
        else:
            loaded = checkpoint["model"]
        shapes = self.model.state_dict()
        missing = [
            k for k in trunk_keys(model_keys) if k not in loaded or tuple(loaded[k].shape) != tuple(shapes[k].shape)
        ]
        if missing:
            raise DetectionSetupError(
                f"MODEL.WEIGHTS {weights} leaves {len(missing)} of the model's {len(trunk_keys(model_keys))} "
                f"pretrained trunk parameters unset (e.g. {missing[0]}): the weights do not fit this model "
                "(another depth or layout than MODEL.RESNETS.DEPTH?); the run would train those from random and be "
                "credited to the backbone (SALFMIX.CHECK_WEIGHTS False skips this check)"
            )
