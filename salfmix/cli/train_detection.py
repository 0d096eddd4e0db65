"""Fine-tune Faster R-CNN on PASCAL VOC from a converted backbone, or evaluate a trained model.

Examples::

    # the paper's protocol (4 GPUs; fewer GPUs are rescaled by SOLVER.REFERENCE_WORLD_SIZE)
    python -m salfmix.cli.train_detection --num-gpus 4 \\
        --config-file configs/detection/voc0712_faster_rcnn_R_50_C4_24k.yaml \\
        MODEL.WEIGHTS r50_cutmix.pkl OUTPUT_DIR output/det/cutmix_s0 SALFMIX.METHOD cutmix SEED 0

    # evaluation only, of a finished run
    python -m salfmix.cli.train_detection --eval-only --config-file output/det/cutmix_s0/config.yaml \\
        MODEL.WEIGHTS output/det/cutmix_s0/model_final.pth

    # two processes on the CPU (gloo): torchrun instead of --num-gpus
    torchrun --standalone --nproc_per_node=2 -m salfmix.cli.train_detection \\
        --config-file configs/detection/voc_demo_faster_rcnn_R_50_FPN_cpu.yaml MODEL.WEIGHTS r50.pkl

Datasets: the built-in VOC names are read from $DETECTRON2_DATASETS/VOC2007 and VOC2012.
The run folder (OUTPUT_DIR) receives config.yaml, run_info.json, eval_results.json and, with
SALFMIX.PRETRAIN_METRICS, pretrain_metrics.json (see detection/README.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch

import detection  # noqa: F401  (before Detectron2: restores the names it needs)
from detection.run_folder import already_finished, check_training_run
from detection.train import check_setup, init_torchrun
from detection.train import run as train
from salfmix.distributed import leaving_process_group
from salfmix.errors import DetectionSetupError, RunError
from salfmix.runs.cli import flags_anywhere, resume_command
from salfmix.runs.signals import Interrupted

from detectron2.engine import default_argument_parser, launch


def get_parser() -> argparse.ArgumentParser:
    """Detectron2's standard options: --config-file, --num-gpus, --resume, --eval-only, KEY VALUE..."""
    parser = default_argument_parser(epilog=__doc__)
    parser.description = "Fine-tune or evaluate Faster R-CNN on PASCAL VOC (Detectron2)."
    # Detectron2's default port depends only on the user id, so two jobs of one user on one
    # machine would meet on it; "auto" makes launch take a free local port (one machine only).
    parser.set_defaults(dist_url="auto")
    return flags_anywhere(parser)  # Detectron2's opts are REMAINDER: "... OUTPUT_DIR out --resume" failed


def main(args: argparse.Namespace) -> Any:
    """Check the setup, then run in this process (torchrun, one device) or launch GPU workers.

    Raises DetectionSetupError / RunError (one line) on bad input or a refused run folder, and
    salfmix.runs.signals.Interrupted after SIGINT / SIGTERM (a checkpoint was saved at that iteration).
    """
    launcher = [] if args.num_gpus == 1 else ["--num-gpus", str(args.num_gpus)]
    if args.num_machines > 1:
        launcher += [
            "--num-machines",
            str(args.num_machines),
            "--machine-rank",
            str(args.machine_rank),
            "--dist-url",
            args.dist_url,
        ]
    if args.eval_only:  # an interrupted evaluation is simply run again
        launcher.append("--eval-only")
    args.resume_command = resume_command(
        "salfmix.cli.train_detection", args.config_file, args.opts, launcher, resume=args.resume or not args.eval_only
    )
    if init_torchrun():  # torchrun started this process: it is one worker of the job
        return train_and_leave(args)
    world_size = args.num_gpus * args.num_machines
    if world_size > 1 and not torch.cuda.is_available():
        raise DetectionSetupError(
            f"--num-gpus {args.num_gpus} --num-machines {args.num_machines}: no CUDA device; "
            "on the CPU run several processes with torchrun --nproc_per_node=N -m salfmix.cli.train_detection ..."
        )
    if args.num_machines > 1 and args.dist_url == "auto":
        raise DetectionSetupError(
            f"--num-machines {args.num_machines}: give --dist-url tcp://<address of machine 0>:<port> on every "
            "machine ('auto' takes a free port on this machine only)"
        )
    finished = already_finished(args, world_size)
    if finished:  # a --resume of a finished run: nothing to launch, nothing to touch
        print(finished)
        return None
    if world_size > 1:
        cfg = check_setup(args)  # fail here, in one line, rather than in every spawned worker
        if cfg.MODEL.DEVICE == "cpu":
            raise DetectionSetupError(
                "--num-gpus with MODEL.DEVICE cpu: launch spawns one process per GPU; "
                "for CPU processes use torchrun --nproc_per_node=N -m salfmix.cli.train_detection ..."
            )
        check_training_run(cfg, args, world_size)
        args.datasets_validated = True  # the spawned workers skip parsing every annotation again
    return launch(
        train_and_leave,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


def train_and_leave(args: argparse.Namespace) -> Any:
    """Train (or evaluate) in this process, then leave the job's process group, if any: after
    the run ends or every process stopped together (:func:`salfmix.distributed.leaving_process_group`)."""
    with leaving_process_group():
        return train(args)


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    parsed = get_parser().parse_args(argv)
    try:
        main(parsed)
    except (DetectionSetupError, RunError) as err:
        sys.exit(f"error: {err}")
    except (Interrupted, KeyboardInterrupt) as err:
        stop = err if isinstance(err, Interrupted) else Interrupted(2, "before training started")
        if int(os.environ.get("RANK", "0")) == 0:
            again = "run again with" if parsed.eval_only else "resume with"
            print(f"{stop}; {again}: {getattr(parsed, 'resume_command', '')}", file=sys.stderr)
        sys.exit(stop.exit_code)


if __name__ == "__main__":
    run()
