"""The configs shipped with the project, found through the package (like Detectron2's
``model_zoo.get_config_file``), whether it runs from a checkout or from an installed wheel.

In a checkout they are the top-level ``configs/pretrain`` and ``configs/detection``; a wheel
carries the same files as the package data ``salfmix/configs/``. Every tool's ``--config-file``
takes a path, or the name of a shipped config (``pretrain/Base-Demo-R50.yaml``, also spelled
``configs/pretrain/Base-Demo-R50.yaml``), resolved by :func:`resolve`.
"""

from __future__ import annotations

import os

__all__ = ["config_dir", "config_path", "list_configs", "resolve"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_STAGES = ("pretrain", "detection", "slurm")  # slurm: the cluster defaults of --launcher slurm


def config_dir(stage: str = "") -> str:
    """The folder of the shipped configs (of ``stage``: ``pretrain`` or ``detection``)."""
    for root in (os.path.join(_PACKAGE_DIR, "configs"), os.path.join(os.path.dirname(_PACKAGE_DIR), "configs")):
        if os.path.isdir(os.path.join(root, "pretrain")):
            return os.path.join(root, stage) if stage else root
    raise FileNotFoundError(
        f"the shipped configs are missing (looked in {_PACKAGE_DIR}/configs and its checkout's "
        "configs/): a broken install"
    )


def _shipped_name(name: str) -> str | None:
    parts = os.path.normpath(name).split(os.sep)
    if parts and parts[0] == "configs":
        parts = parts[1:]
    if len(parts) == 2 and parts[0] in _STAGES and parts[1].endswith((".yaml", ".yml")):
        return os.path.join(*parts)
    return None


def config_path(name: str) -> str:
    """The file of the shipped config ``name`` (``pretrain/X.yaml``); FileNotFoundError naming it."""
    shipped = _shipped_name(name)
    path = os.path.join(config_dir(), shipped) if shipped else None
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(
            f"{name}: not a shipped config (they are pretrain/<name>.yaml and "
            f"detection/<name>.yaml: {', '.join(list_configs()[:4])}, ...)"
        )
    return path


def resolve(path: str) -> str:
    """``path`` itself if it is a file, else the shipped config of that name, else ``path`` (the
    caller's loader then reports it missing)."""
    if not path or os.path.isfile(path):
        return path
    shipped = _shipped_name(path)
    if shipped:
        candidate = os.path.join(config_dir(), shipped)
        if os.path.isfile(candidate):
            return candidate
    return path


def list_configs(stage: str = "") -> list[str]:
    """Names of the shipped configs (``pretrain/X.yaml``...), of one stage or of both."""
    out = []
    for st in [stage] if stage else _STAGES:
        folder = config_dir(st)
        out += [f"{st}/{n}" for n in sorted(os.listdir(folder)) if n.endswith((".yaml", ".yml"))]
    return out
