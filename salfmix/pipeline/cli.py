"""The command-line side of the pipeline tools: shared options, and how a command ends.

``salfmix.cli.run_pipeline`` and ``salfmix.cli.run_methods`` add their own options to
:func:`add_common_options`, build their plans with :func:`salfmix.pipeline.plan.plan_pipelines` and run
them through :func:`execute`: a plan that does not check out exits 2 before anything ran, a
failed stage exits 1, both with one ``error:`` line; SIGINT / SIGTERM exit 130 / 143 with a
line saying that the same command continues.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Callable, List, Optional, TypeVar

from salfmix.errors import PipelineError
from salfmix.pipeline.plan import Plan
from salfmix.pipeline.stages import Context
from salfmix.runs.signals import Interrupted, exit_code

__all__ = ["add_common_options", "execute", "opts_words", "seed_number"]

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


def opts_words(text: str, option: str) -> List[str]:
    """The ``KEY VALUE`` words of an ``--*-opts`` string (shell quoting applies inside it)."""
    try:
        return shlex.split(text or "")
    except ValueError as err:
        raise PipelineError(f"{option}: {err}") from None


def add_common_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--out``, ``--num-gpus``, ``--pretrain-config``, ``--det-config``, ``--pretrain-opts``,
    ``--det-opts``, ``--quiet``."""
    p.add_argument("--out", default="output/pipeline", help="root of the run folders (default: output/pipeline)")
    p.add_argument("--num-gpus", type=_positive, default=1, metavar="N",
                   help="N > 1: torchrun with N processes for pretraining, Detectron2's launch on N GPUs for "
                        "detection; without CUDA both stages run N CPU processes (gloo) through torchrun")
    p.add_argument("--pretrain-config", default=DEFAULT_PRETRAIN_CONFIG, metavar="FILE",
                   help="pretraining config: a base (the run sets MIX.METHOD from the method; default: "
                        "%(default)s), a leaf of one method, or a path with {method} (replaced by the method)")
    p.add_argument("--det-config", default=DEFAULT_DET_CONFIG, metavar="FILE",
                   help="detection config (default: %(default)s)")
    p.add_argument("--pretrain-opts", default="", metavar="'KEY VALUE ...'", help="overrides for pretraining")
    p.add_argument("--det-opts", default="", metavar="'KEY VALUE ...'", help="overrides for detection")
    p.add_argument("--quiet", action="store_true",
                   help="stage output only to OUT/logs/ (the end of the log is shown if a stage fails)")
    return p


def execute(prog: str, plan: Callable[[], List[Plan]], body: Callable[[List[Plan], Context], T],
            report_out: Optional[str] = None) -> T:
    """``body(plan(), context)`` with the exits of the module docstring; every check of
    :func:`salfmix.pipeline.checks.check_plans` (folders, datasets, what the manifests say) runs first."""
    from salfmix.pipeline.checks import check_plans

    try:
        plans = plan()
        for item, start in zip(plans, check_plans(plans, report_out)):
            item.start = start
    except PipelineError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    again = shlex.join([sys.executable, *sys.argv])
    try:
        return body(plans, Context(again=again))
    except PipelineError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(1)
    except (Interrupted, KeyboardInterrupt) as err:
        stop = err if isinstance(err, Interrupted) else Interrupted(2)
        print(f"{prog}: {stop}; run the same command again to continue", file=sys.stderr)
        raise SystemExit(exit_code(stop.signum))
