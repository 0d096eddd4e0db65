"""The run manifest ``run.json``, the versions it records and the config comparison of a resume.

``run.json`` (written atomically, by the run's main process) holds::

    {"stage": "pretrain" | "detection", "status": "running" | "finished" | "failed" | "interrupted",
     "method": ..., "config_hash": sha256 of the resolved config.yaml text, "started": ..., "ended": ...,
     "command": [...], "resume_command": "...", "versions": {...}, "error": ..., "attempts": [
         {"started", "host", "pid", "machine", "slurm_job_id", "slurm_restart_count", "ended", "end"},
         ...], ...}

plus what a stage adds (e.g. ``epoch``, the newest checkpointed epoch). Times are local ISO 8601.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import yaml

from salfmix.runs.files import atomic_write_json

MANIFEST = "run.json"
STATUSES = ("running", "finished", "failed", "interrupted")
# The checkout that holds the package (salfmix/runs/manifest.py), when it runs from one: its git
# commit is recorded; an installed package records its version instead.
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def now() -> str:
    """The local time, ISO 8601 to the second, with the UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def config_hash(config_text: str) -> str:
    """sha256 of a resolved config's YAML text (what the run folder's config.yaml holds)."""
    return hashlib.sha256(config_text.encode("utf-8")).hexdigest()


def git_commit(project_dir: str = PROJECT_DIR) -> str | None:
    """The project's git commit (``+dirty`` when tracked files changed), or None if it is not a checkout."""
    if not os.path.exists(os.path.join(project_dir, ".git")):
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def versions() -> dict[str, str | None]:
    """python, torch, torchvision, detectron2 (None when not installed) and the project's git commit."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("salfmix", "torch", "torchvision", "detectron2"):
        found[package] = _version(package)
    found["git_commit"] = git_commit()
    return found


def machine() -> dict[str, Any]:
    """The hardware a run's numbers depend on beyond code and versions: the float kernels are
    chosen per CPU instruction set (and GPU), and sums depend on the thread count, so a rerun is
    bit for bit the same only where these match (docs/RESULTS.md, "Reproducing a run").

    ``{"cpu": model name, "cpus": logical CPUs}``, plus, where torch is imported,
    ``"cpu_capability"`` (the kernels torch dispatches to: ``AVX512``, ``AVX2``, ...),
    ``"torch_threads"`` and ``"gpus"`` (device names; absent without CUDA).
    """
    found: dict[str, Any] = {"cpu": _cpu_model(), "cpus": os.cpu_count()}
    torch = sys.modules.get("torch")  # never imported here: this module serves torch-free tools too
    if torch is None:
        return found
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if capability is not None:  # torch 2.1+
        found["cpu_capability"] = capability()
    found["torch_threads"] = torch.get_num_threads()
    # Only the training process records a manifest (RunFolder.start), and it is about to use the
    # GPUs anyway: reading their names here (which initialises CUDA) forks nothing that needs them.
    if torch.cuda.is_available():
        try:
            found["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except RuntimeError as err:  # a driver problem is the run's to report, not the manifest's
            found["gpus"] = f"unknown ({' '.join(str(err).split())[:200]})"
    return found


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str | None:
    """The installed version of ``package`` without importing it (detectron2 is slow to import)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        pass
    # Installed under another distribution name (a source build): read its __version__ line.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return None
    try:
        with open(spec.origin, encoding="utf-8") as f:
            found = re.search(r"^__version__\s*=\s*[\"']([^\"']+)", f.read(), re.M)
    except OSError:
        return None
    return found.group(1) if found else "unknown"


def read_manifest(folder: str) -> dict[str, Any] | None:
    """``folder/run.json`` as a dict, None if absent; an unreadable one is reported as status ``unreadable``."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {"status": "unreadable"}
    return data if isinstance(data, dict) else {"status": "unreadable"}


def write_manifest(folder: str, data: dict[str, Any]) -> None:
    """Write ``folder/run.json`` atomically."""
    atomic_write_json(os.path.join(folder, MANIFEST), data)


# --- comparing the config of a resume with the run's ------------------------------------------


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"A.B.C": value}`` for every leaf of a nested dict (lists are leaves)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _allowed(key: str, allowed: Sequence[str]) -> bool:
    return any(key == a or (a.endswith(".*") and key.startswith(a[:-1])) for a in allowed)


def config_drift(
    old_text: str, new_text: str, allowed: Sequence[str] = (), defaults_text: str | None = None
) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` for every dotted key whose value differs between two YAML configs,
    except the keys in ``allowed`` (exact keys, or ``"TRAIN.*"`` for every key under ``TRAIN``).
    A key present in one config only shows ``<absent>`` for the other; with ``defaults_text`` (the
    stage's default config), a key the old config does not have (the run was made before the key
    existed) is no drift while the new config keeps the key's default, which is the behaviour the
    old code had."""
    old = flatten(yaml.safe_load(old_text) or {})
    new = flatten(yaml.safe_load(new_text) or {})
    defaults = flatten(yaml.safe_load(defaults_text) or {}) if defaults_text else {}
    absent = "<absent>"
    keys = sorted(set(old) | set(new))

    def differs(key: str) -> bool:
        if old.get(key, absent) == new.get(key, absent):
            return False
        return not (key not in old and key in defaults and new.get(key, absent) == defaults[key])

    return [(k, old.get(k, absent), new.get(k, absent)) for k in keys if differs(k) and not _allowed(k, allowed)]


def describe_drift(drift: Sequence[tuple[str, Any, Any]], limit: int = 6) -> str:
    """``KEY: old -> new; ...`` (at most ``limit`` keys, then how many more)."""
    shown = "; ".join(f"{k}: {o!r} -> {n!r}" for k, o, n in drift[:limit])
    more = f"; and {len(drift) - limit} more" if len(drift) > limit else ""
    return shown + more
