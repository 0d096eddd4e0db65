"""Run a classification study: every method (and ablation) x several seeds, then the report.

Each run is a pretraining run (as salfmix.cli.pretrain) of one config, --config-file (default: the
CIFAR-10 PreActResNet-18 base, each run setting its MIX.METHOD) with the study's overrides (the
paper's recipe scaled down: see --epochs etc.; lr steps x0.1 after 50% and 75% of the epochs).
Every config is loaded and checked before the first run starts. Runs go to
OUTPUT_ROOT/<tag>/seed<k>; a run whose run.json says finished is skipped, any other resumes from
its last checkpoint, so the command can simply be repeated (Ctrl-C stops the running runs at a
safe point). Runs are ordered seed by
seed. At the end the report (salfmix.cli.cls_report) of every finished run goes to OUTPUT_ROOT/report.
--launcher slurm makes each run a SLURM job (then the report a job after all of them; see
salfmix.pipeline.slurm and the README's "Running on a SLURM cluster").

Example (the digits study of docs/RESULTS.md)::

    python -m salfmix.cli.make_digits_dataset --out output/study_digits/data --train-per-class 20
    python -m salfmix.cli.run_study --data-root output/study_digits/data/cifar-10-batches-py \\
        --output-root output/study_digits --seeds 0 1 2 --epochs 12 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pretrain.mixing import MIXERS
from pretrain.report import ReportError, build_report
from pretrain.report_format import write_report
from salfmix.errors import PipelineError
from salfmix.pipeline.cli import add_launcher_options
from salfmix.pipeline.study import (
    ABLATIONS,
    DEFAULT_R_VALUES,
    Recipe,
    check_study,
    execute_study,
    format_duration,
    plan_runs,
    plan_tags,
    run_opts,
)
from salfmix.runs.signals import Interrupted


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="the dataset folder (e.g. .../cifar-10-batches-py)")
    p.add_argument("--output-root", required=True, help="runs go to OUTPUT_ROOT/<tag>/seed<k>")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="M",
        help="methods (default: all of MIXERS, plus every ablation unless --ablations says otherwise)",
    )
    p.add_argument(
        "--ablations",
        nargs="*",
        default=None,
        choices=list(ABLATIONS),
        help="ablations to add (default: all without --methods, none with it; give none to add nothing)",
    )
    p.add_argument("--r-values", nargs="+", type=float, default=list(DEFAULT_R_VALUES), help="r of the 'r' ablation")
    p.add_argument("--r-method", default="salfmix", help="method of the 'r' ablation")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=Recipe.epochs)
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--lr", type=float, default=Recipe.lr)
    p.add_argument("--input-size", type=int, default=Recipe.input_size, help="MODEL.INPUT_SIZE")
    p.add_argument("--n", type=int, default=Recipe.n, help="MIX.N, the pooled saliency grid")
    p.add_argument("--r", type=float, default=Recipe.r, help="MIX.R of every method but the r ablation's")
    p.add_argument(
        "--start-epoch",
        type=int,
        default=Recipe.start_epoch,
        help="MIX.START_EPOCH (default 0: each method's own rule)",
    )
    p.add_argument("--saliency", choices=("fresh", "cached"), default=Recipe.saliency, help="MIX.SALIENCY")
    p.add_argument("--checkpoint-period", type=int, default=Recipe.checkpoint_period, help="epochs between checkpoints")
    p.add_argument(
        "--config-file",
        default=Recipe.config,
        metavar="FILE",
        help="the config of every run: a base (each run sets MIX.METHOD; default %(default)s), a leaf of "
        "the one method studied, or a path with {method} (a leaf per method); a path or a shipped name",
    )
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (1: in this process; more: subprocesses)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep model_epoch*.pth of finished runs")
    p.add_argument("--no-report", action="store_true", help="do not write OUTPUT_ROOT/report")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (with --launcher slurm: every job and its resources) and exit",
    )
    p.add_argument("--opts", nargs="*", default=[], help="further KEY VALUE overrides for every run (flags may follow)")
    p.add_argument("--status", action="store_true", help="print every run's state (and SLURM job); run nothing")
    add_launcher_options(p, dry_run=False)
    return p


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the study; returns ``{"ran", "skipped", "failed", "report", "wall_s"}``."""
    recipe = Recipe(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        input_size=args.input_size,
        n=args.n,
        r=args.r,
        start_epoch=args.start_epoch,
        checkpoint_period=min(args.checkpoint_period, args.epochs),
        saliency=args.saliency,
        extra=list(args.opts or []),
        config=args.config_file,
    )
    # Named methods are exactly those runs; the ablations' extra rows only when asked for.
    methods = list(MIXERS) if args.methods is None else args.methods
    ablations = args.ablations if args.ablations is not None else list(ABLATIONS) if args.methods is None else []
    try:
        tags = plan_tags(methods, ablations, args.r_values, args.r_method, args.r)
        runs = plan_runs(args.output_root, tags, args.seeds)
        missing = sorted({recipe.config_file(m) for _, m, _ in tags if not os.path.isfile(recipe.config_file(m))})
        if missing:
            raise FileNotFoundError(f"--config-file {missing[0]}: config file not found")
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    if args.status:
        from salfmix.pipeline.launch import print_study_status

        print_study_status(runs, os.path.abspath(args.output_root))
        return {"ran": [], "skipped": [], "failed": {}, "report": None, "wall_s": 0.0}
    if not os.path.isdir(args.data_root):
        raise SystemExit(f"error: --data-root {args.data_root}: not a folder")
    try:
        check_study(runs, recipe, args.data_root)
    except PipelineError as err:
        raise SystemExit(f"error: {err}") from None
    todo = [run for run in runs if not run.done]
    title = f"{os.path.basename(os.path.normpath(args.output_root))}: final-epoch test error ({recipe.epochs} epochs)"
    if args.launcher == "slurm":
        from salfmix.pipeline.launch import launch_study_slurm

        try:
            paths = launch_study_slurm("run_study", runs, recipe, args, title)
        except PipelineError as err:
            raise SystemExit(f"error: {err}") from None
        return {"ran": [], "skipped": [], "failed": {}, "report": paths or None, "wall_s": 0.0}
    print(
        f"study: {len(tags)} tags x {len(args.seeds)} seeds = {len(runs)} runs, {len(runs) - len(todo)} already done; "
        f"{recipe.epochs} epochs, lr {recipe.lr} steps {recipe.steps()}, batch {recipe.batch_size}, "
        f"input {recipe.input_size}px, n={recipe.n}",
        flush=True,
    )
    if args.dry_run:
        for run in runs:
            print(
                f"  {'done' if run.done else 'todo'} {run.run_dir}: {recipe.config_file(run.method)} "
                f"{' '.join(run_opts(run, recipe, args.data_root))}"
            )
        return {"ran": [], "skipped": [r.run_dir for r in runs if r.done], "failed": {}, "report": None, "wall_s": 0.0}
    try:
        summary = execute_study(
            runs,
            recipe,
            args.data_root,
            args.jobs,
            args.threads,
            args.keep_checkpoints,
            say=lambda line: print(line, flush=True),
        )
    except (Interrupted, KeyboardInterrupt) as err:
        stop = err if isinstance(err, Interrupted) else Interrupted(2)
        print(f"study: {stop}; run the same command again to continue", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    summary["report"] = None
    ran, failed, wall = summary["ran"], summary["failed"], summary["wall_s"]
    print(
        f"study: ran {len(ran)}, skipped {len(summary['skipped'])}, failed {len(failed)}, wall {format_duration(wall)}"
    )
    for run_dir, error in failed.items():
        print(f"  failed {run_dir}: {error}", file=sys.stderr)
    finished = [r.run_dir for r in runs if r.done]
    if not args.no_report and finished:
        try:
            report = build_report(finished, title=title)
        except ReportError as err:
            raise SystemExit(f"error: {err}") from None
        summary["report"] = write_report(report, os.path.join(args.output_root, "report"))
        with open(summary["report"]["md"], encoding="utf-8") as f:
            print(f.read(), end="")
    return summary


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    result = main(get_parser().parse_args(argv))
    sys.exit(1 if result["failed"] else 0)


if __name__ == "__main__":
    run()
