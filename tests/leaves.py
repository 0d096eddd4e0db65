"""Configs of one method, as a user writes them: a two-line leaf over a shipped base config.

The shipped configs are one base per family (``configs/pretrain/Base-*.yaml``); a run sets
``MIX.METHOD``. Many tests name a run like ``tinyimagenet_preact18_hybridmix_v3``:
:func:`leaf_config` writes that leaf (``_BASE_`` the family's base, ``MIX.METHOD`` the method)
into a temporary folder and returns its path.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from salfmix.config_files import config_dir

FAMILIES = {
    "tinyimagenet_r50": "Base-TinyImageNet-R50.yaml",
    "tinyimagenet_preact18": "Base-TinyImageNet-PreAct18.yaml",
    "cifar10_preact18": "Base-CIFAR10-PreAct18.yaml",
    "cifar100_preact18": "Base-CIFAR100-PreAct18.yaml",
    "cifar100_pyramidnet110": "Base-CIFAR100-PyramidNet110.yaml",
    "cifar100_regnet200m": "Base-CIFAR100-RegNet200M.yaml",
    "demo_r50": "Base-Demo-R50.yaml",
    "fashion_resnet20": "Base-FashionMNIST-ResNet20.yaml",
}
_FOLDER = tempfile.mkdtemp(prefix="leaf_configs_")
atexit.register(shutil.rmtree, _FOLDER, True)


def split(name: str) -> tuple:
    """``("tinyimagenet_preact18", "hybridmix_v3")`` for ``tinyimagenet_preact18_hybridmix_v3``."""
    family = max((f for f in FAMILIES if name.startswith(f + "_")), key=len)
    return family, name[len(family) + 1 :]


def base_config(family: str) -> str:
    """The shipped base config of ``family``."""
    return os.path.join(config_dir("pretrain"), FAMILIES[family])


def leaf_config(name: str) -> str:
    """The path of a leaf config ``<family>_<method>`` (written on first use)."""
    family, method = split(name)
    path = os.path.join(_FOLDER, f"{name}.yaml")
    if not os.path.isfile(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"_BASE_: {base_config(family)}\nMIX:\n  METHOD: {method}\n")
    return path
