"""What SLURM jobs ask for, and whether the cluster can give it, checked before anything is submitted.

:class:`Resources` holds the keys of ``configs/slurm/cluster.yaml`` (shipped with the package),
:func:`load_resources` reads that file and the command line's overrides, :func:`check_cluster` asks
the cluster (``sinfo``) about the partition, its GPUs and the time limit. Used by
:mod:`salfmix.pipeline.slurm`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from salfmix.errors import PipelineError

DEFAULTS_FILE = "slurm/cluster.yaml"  # shipped with the package (salfmix.config_files)


@dataclass(frozen=True)
class Resources:
    """What every training job asks SLURM for (conversion and report jobs take one CPU, no GPU).

    The keys of ``configs/slurm/cluster.yaml``; an empty string or 0 leaves the choice to SLURM."""

    partition: str = ""
    account: str = ""
    qos: str = ""
    time_min: int = 240
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 4
    mem_gb: int = 0
    constraint: str = ""
    signal_delay_s: int = 120
    max_requeues: int = 100

    def sbatch(self, light: bool = False) -> dict[str, Any]:
        """submitit's parameters for a training job (``light``: a conversion or report job)."""
        params: dict[str, Any] = {
            "timeout_min": self.time_min,
            "nodes": 1 if light else self.nodes,
            "tasks_per_node": 1,
            "cpus_per_task": 1 if light else self.cpus_per_task,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        if self.gpus_per_node and not light:
            params["gpus_per_node"] = self.gpus_per_node
        if self.mem_gb and not light:
            params["mem_gb"] = self.mem_gb
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key):
                params[f"slurm_{key}"] = getattr(self, key)
        return params

    def describe(self, light: bool = False) -> str:
        """One line for ``--dry-run`` and the logs."""
        if light:
            words = ["nodes=1", "cpus=1", "gpus=0"]
        else:
            words = [f"nodes={self.nodes}", f"cpus={self.cpus_per_task}", f"gpus/node={self.gpus_per_node}"]
            words += [f"mem={self.mem_gb}G"] if self.mem_gb else []
        words.append(f"time={self.time_min}min")
        words += [f"{k}={getattr(self, k)}" for k in ("partition", "account", "qos", "constraint") if getattr(self, k)]
        return " ".join(words)


def load_resources(path: str | None, overrides: dict[str, Any]) -> Resources:
    """The cluster defaults of ``path`` (default: the shipped ``slurm/cluster.yaml``), then the
    command line's ``overrides`` (None = not given). One line for an unknown key or a bad value."""
    import yaml

    from salfmix.config_files import resolve

    path = resolve(path or DEFAULTS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as err:
        raise PipelineError(f"--cluster-config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise PipelineError(f"--cluster-config {path}: not YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise PipelineError(f"--cluster-config {path}: expected a mapping of keys, got {type(data).__name__}")
    known = {f.name: f.type for f in fields(Resources)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise PipelineError(f"--cluster-config {path}: unknown key {unknown[0]} (valid: {', '.join(known)})")
    values = {k: ("" if v is None else v) for k, v in data.items()}
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key, value in values.items():
        want = int if known[key] in (int, "int") else str
        if want is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise PipelineError(f"--cluster-config {path}: {key} {value!r}: expected a non-negative integer")
        values[key] = want(value)
    res = Resources(**values)
    if res.time_min < 1 or res.nodes < 1 or res.cpus_per_task < 1:
        raise PipelineError("time_min, nodes and cpus_per_task must be at least 1")
    return res


def run_command(cmd: Sequence[str]) -> subprocess.CompletedProcess:
    """``cmd``'s result, output captured; a missing command or one that hangs a minute reads as
    exit status 127 with the reason as its stderr (the SLURM client commands are asked, never trusted)."""
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return subprocess.CompletedProcess(list(cmd), 127, "", str(err))


def check_cluster(res: Resources) -> None:
    """Before anything is submitted: sbatch on the PATH, the partition (or a default one), GPUs on
    it when asked for, and a time limit the stop warning fits in. One line each."""
    if shutil.which("sbatch") is None:
        raise PipelineError("--launcher slurm: sbatch is not on the PATH (run on a login node of the cluster)")
    listed = run_command(["sinfo", "-h", "-o", "%P %G"])
    if listed.returncode:
        raise PipelineError(f"--launcher slurm: sinfo failed: {' '.join((listed.stderr or listed.stdout).split())}")
    partitions: dict[str, str] = {}
    default = ""
    for line in listed.stdout.splitlines():
        name, _, gres = line.strip().partition(" ")
        if name.endswith("*"):
            name = default = name[:-1]
        partitions[name] = partitions.get(name, "") + gres
    partition = res.partition or default
    if res.partition and res.partition not in partitions:
        raise PipelineError(
            f"--partition {res.partition}: no such partition (this cluster has: "
            f"{', '.join(sorted(partitions)) or 'none'})"
        )
    if not partition:
        raise PipelineError(
            f"--partition: this cluster has no default partition; name one ({', '.join(sorted(partitions))})"
        )
    if res.gpus_per_node and "gpu" not in partitions[partition]:
        raise PipelineError(
            f"--gpus-per-node {res.gpus_per_node}: partition {partition} has no GPUs "
            f"(its nodes' gres: {partitions[partition].strip() or '(null)'})"
        )
    if res.time_min * 60 < res.signal_delay_s + 60:
        raise PipelineError(
            f"--time {res.time_min} min: shorter than the stop warning (--signal-delay "
            f"{res.signal_delay_s} s) plus a minute of training; a job could never checkpoint"
        )
