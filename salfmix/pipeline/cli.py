"""The command-line side of the pipeline tools: shared options, and how a command ends.

``salfmix.cli.run_pipeline`` and ``salfmix.cli.run_methods`` add their own options to
:func:`add_common_options`, build their plans with :func:`salfmix.pipeline.plan.plan_pipelines` and run
them through :func:`execute`: a plan that does not check out exits 2 before anything ran, a
failed stage exits 1, both with one ``error:`` line; SIGINT / SIGTERM exit 130 / 143 with a
line saying that the same command continues.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import TypeVar

from salfmix.errors import PipelineError
from salfmix.pipeline.plan import Plan
from salfmix.pipeline.stages import Context
from salfmix.runs.signals import Interrupted, exit_code

__all__ = ["add_common_options", "add_launcher_options", "execute", "opts_words", "seed_number", "slurm_overrides"]

T = TypeVar("T")
DEFAULT_PRETRAIN_CONFIG = "pretrain/Base-TinyImageNet-R50.yaml"  # shipped configs (salfmix.config_files)
DEFAULT_DET_CONFIG = "detection/voc0712_faster_rcnn_R_50_C4_24k.yaml"


def seed_number(text: str) -> int:
    """An argparse type: a non-negative integer."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a non-negative integer")
    return int(text)


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return int(text)


def opts_words(text: str, option: str) -> list[str]:
    """The ``KEY VALUE`` words of an ``--*-opts`` string (shell quoting applies inside it)."""
    try:
        return shlex.split(text or "")
    except ValueError as err:
        raise PipelineError(f"{option}: {err}") from None


def add_common_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--out``, ``--num-gpus``, ``--pretrain-config``, ``--det-config``, ``--pretrain-opts``,
    ``--det-opts``, ``--quiet``."""
    p.add_argument("--out", default="output/pipeline", help="root of the run folders (default: output/pipeline)")
    p.add_argument(
        "--num-gpus",
        type=_positive,
        default=1,
        metavar="N",
        help="N > 1: torchrun with N processes for pretraining, Detectron2's launch on N GPUs for "
        "detection; without CUDA both stages run N CPU processes (gloo) through torchrun",
    )
    p.add_argument(
        "--pretrain-config",
        default=DEFAULT_PRETRAIN_CONFIG,
        metavar="FILE",
        help="pretraining config: a base (the run sets MIX.METHOD from the method; default: "
        "%(default)s), a leaf of one method, or a path with {method} (replaced by the method)",
    )
    p.add_argument(
        "--det-config", default=DEFAULT_DET_CONFIG, metavar="FILE", help="detection config (default: %(default)s)"
    )
    p.add_argument("--pretrain-opts", default="", metavar="'KEY VALUE ...'", help="overrides for pretraining")
    p.add_argument("--det-opts", default="", metavar="'KEY VALUE ...'", help="overrides for detection")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="stage output only to OUT/logs/ (the end of the log is shown if a stage fails)",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="print every (method, seed) and stage with its state (and SLURM job), run nothing",
    )
    add_launcher_options(p)
    return p


def add_launcher_options(p: argparse.ArgumentParser, dry_run: bool = True) -> None:
    """``--launcher`` and the SLURM resources (see salfmix.pipeline.slurm and configs/slurm/cluster.yaml);
    ``dry_run``: add ``--dry-run`` too (a command that has its own leaves it out)."""
    g = p.add_argument_group("launcher", "where the stages run: here (local) or as SLURM jobs (slurm, via submitit)")
    g.add_argument("--launcher", choices=("local", "slurm"), default="local", help="default: %(default)s")
    if dry_run:
        g.add_argument("--dry-run", action="store_true", help="slurm: print every job, its resources and dependencies")
    g.add_argument("--no-wait", action="store_true", help="slurm: submit and return (follow with --status)")
    g.add_argument(
        "--cluster-config",
        default=None,
        metavar="FILE",
        help="the cluster's defaults (default: the shipped slurm/cluster.yaml)",
    )
    for flag, key, kind, what in (
        ("--partition", "partition", str, "partition (default: the cluster's default partition)"),
        ("--account", "account", str, "account"),
        ("--qos", "qos", str, "quality of service"),
        ("--time", "time_min", _positive, "time limit of a job, minutes"),
        ("--nodes", "nodes", _positive, "nodes per training job"),
        ("--gpus-per-node", "gpus_per_node", seed_number, "GPUs per node (0: CPU jobs)"),
        ("--cpus-per-task", "cpus_per_task", _positive, "CPUs per node of a training job"),
        ("--mem-gb", "mem_gb", seed_number, "memory per node, GB (0: the cluster's default)"),
        ("--constraint", "constraint", str, "node features (sbatch --constraint)"),
        (
            "--signal-delay",
            "signal_delay_s",
            seed_number,
            "seconds before the time limit at which a job is told to checkpoint and requeue",
        ),
    ):
        g.add_argument(flag, dest=f"slurm_{key}", type=kind, default=None, metavar="V", help=what)


def slurm_overrides(args: argparse.Namespace) -> dict:
    """The SLURM resources given on the command line (None: from the cluster config)."""
    return {k[len("slurm_") :]: v for k, v in vars(args).items() if k.startswith("slurm_")}


def execute(
    prog: str,
    plan: Callable[[], list[Plan]],
    body: Callable[[list[Plan], Context], T],
    report_out: str | None = None,
    args: argparse.Namespace | None = None,
    note: str | None = None,
) -> T | None:
    """``body(plan(), context)`` with the exits of the module docstring; every check of
    :func:`salfmix.pipeline.checks.check_plans` (folders, datasets, what the manifests say) runs first.
    ``args`` with ``--status`` prints the states; with ``--launcher slurm`` the plans run as SLURM
    jobs (:func:`salfmix.pipeline.launch.launch_slurm`) instead of ``body``."""
    from salfmix.pipeline.checks import check_plans, check_visible_gpus

    launcher = getattr(args, "launcher", "local")
    # a run held by a live process is refused (an earlier command still going), unless SLURM runs it
    watch_only = bool(getattr(args, "status", False)) or launcher == "slurm"
    try:
        plans = plan()
        for item, start in zip(plans, check_plans(plans, report_out, allow_live=watch_only)):
            item.start = start
        if args is not None and args.status:
            from salfmix.pipeline.launch import print_status

            print_status(plans, args.out, report_out)
            return None
        if launcher == "slurm":
            from salfmix.pipeline.launch import launch_slurm

            return launch_slurm(prog, plans, args, report_out, note)  # type: ignore[return-value]
        check_visible_gpus(plans[0].num_gpus if plans else 1, "--num-gpus", cpu_ok=True)
    except PipelineError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    again = shlex.join([sys.executable, *sys.argv])
    try:
        return body(plans, Context(again=again))
    except PipelineError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except (Interrupted, KeyboardInterrupt) as err:
        stop = err if isinstance(err, Interrupted) else Interrupted(2)
        print(f"{prog}: {stop}; run the same command again to continue", file=sys.stderr)
        raise SystemExit(exit_code(stop.signum)) from None
