"""Restore the few library names that Detectron2 0.6 uses and current releases removed.

Detectron2 0.6 (2021) predates NumPy 1.24 and Pillow 10. Instead of pinning those old
releases (Pillow 9.5 has published security flaws), this module puts back only the names
Detectron2 0.6 really uses, each one only when it is missing, and always with the value it
had before its removal. It must be imported before Detectron2; ``import detection`` does so.

Restored when missing (every use below is in Detectron2 0.6's own source):

``numpy.str`` -> ``str``
    Alias removed in NumPy 1.24. ``data/datasets/pascal_voc.py`` reads the VOC image-set
    files with ``np.loadtxt(f, dtype=np.str)``: without it no VOC split can be loaded.
``numpy.int`` -> ``int``
    Removed in NumPy 1.24. ``data/build.py`` (the class histogram printed when a training
    set is built) and ``evaluation/sem_seg_evaluation.py``.
``numpy.float`` -> ``float``
    Removed in NumPy 1.24. ``evaluation/sem_seg_evaluation.py``.
``numpy.bool`` -> ``bool``
    Removed in NumPy 1.24 and defined again (as ``numpy.bool_``) in NumPy 2.0, so it is
    restored only on NumPy 1.24-1.26. ``evaluation/pascal_voc_evaluation.py`` (the
    "difficult" flags), ``structures/masks.py``, ``utils/visualizer.py``.
``PIL.Image.LINEAR`` -> ``PIL.Image.BILINEAR``
    Removed in Pillow 10 (it was always equal to ``BILINEAR``). It is the default argument
    of ``data/transforms/transform.py:ExtentTransform``, evaluated when
    ``detectron2.data`` is imported: without it the data package does not import.

Also silenced: the warning current torch gives for each ``torch.jit.script`` that Detectron2 0.6
runs at import (that message only; a FutureWarning from torch 2.14, a DeprecationWarning in 2.11).

Not handled here: Detectron2's ``model_zoo`` imports ``pkg_resources``, which setuptools
82 removed; keep ``setuptools<82`` installed.

Importing this module twice, or after the names were set by someone else, changes nothing.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import numpy
import PIL.Image

__all__ = ["NUMPY_ALIASES", "PIL_IMAGE_ALIASES", "RESTORED", "has_attr", "restore"]

# name -> value it had before its removal
NUMPY_ALIASES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool}
PIL_IMAGE_ALIASES: dict[str, Any] = {
    "LINEAR": getattr(PIL.Image, "Resampling", PIL.Image).BILINEAR,
}

# "module.name" strings of what this process restored (empty if nothing was missing)
RESTORED: list[str] = []


def has_attr(module: ModuleType, name: str) -> bool:
    """``hasattr`` without the FutureWarning NumPy's ``__getattr__`` emits for removed aliases."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hasattr(module, name)


def restore(module: ModuleType, aliases: dict[str, Any]) -> list[str]:
    """Set each missing ``aliases`` name on ``module``; never overwrite. Return the names set."""
    added = []
    for name, value in aliases.items():
        if not has_attr(module, name):
            setattr(module, name, value)
            added.append(name)
    return added


RESTORED.extend(f"numpy.{n}" for n in restore(numpy, NUMPY_ALIASES))
RESTORED.extend(f"PIL.Image.{n}" for n in restore(PIL.Image, PIL_IMAGE_ALIASES))

# Detectron2 0.6 scripts a few helpers with ``torch.jit.script`` when it is imported; current
# torch answers each with a warning the user can do nothing about, printed in the middle of every
# tool's output (FutureWarning in torch 2.14, DeprecationWarning in 2.11). Only that message is silenced.
for _category in (FutureWarning, DeprecationWarning):
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=_category)
# Its anchor generator calls ``torch.meshgrid`` without ``indexing``, relying on the default "ij"
# (which it gets): torch warns at the first training step. Our own code always passes ``indexing``.
warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning)
