#!/usr/bin/env python
"""Run a classification study: every method (and ablation) x several seeds, then the report.

Each run is tools/pretrain.py with a shipped leaf config (default: the CIFAR-10 PreActResNet-18
one of the method) and the study's overrides (the paper's recipe scaled down: see --epochs etc.;
lr steps x0.1 after 50% and 75% of the epochs). Runs go to OUTPUT_ROOT/<tag>/seed<k>; a run whose
model_final.pth exists is skipped, an interrupted one resumes from its last checkpoint, so the
command can simply be repeated. Runs are ordered seed by seed. At the end the report
(tools/cls_report.py) of every finished run goes to OUTPUT_ROOT/report.

Example (the digits study of docs/RESULTS.md)::

    python tools/make_digits_dataset.py --out output/study_digits/data --train-per-class 20
    python tools/run_study.py --data-root output/study_digits/data/cifar-10-batches-py \\
        --output-root output/study_digits --seeds 0 1 2 --epochs 12 --jobs 2
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pretrain.engine.checkpoint import LAST, last_checkpoint  # noqa: E402
from pretrain.mixing import MIXERS  # noqa: E402
from pretrain.report import ReportError, build_report, write_report  # noqa: E402
from pretrain.study import (ABLATIONS, DEFAULT_R_VALUES, Recipe, StudyRun, config_file, format_duration,  # noqa: E402
                            plan_runs, plan_tags, run_opts)
from runs.files import atomic_write_bytes  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="the dataset folder (e.g. .../cifar-10-batches-py)")
    p.add_argument("--output-root", required=True, help="runs go to OUTPUT_ROOT/<tag>/seed<k>")
    p.add_argument("--methods", nargs="+", default=list(MIXERS), metavar="M", help="methods (default: all of MIXERS)")
    p.add_argument("--ablations", nargs="*", default=list(ABLATIONS), choices=list(ABLATIONS),
                   help="ablations to add (default: all; give none to add nothing)")
    p.add_argument("--r-values", nargs="+", type=float, default=list(DEFAULT_R_VALUES), help="r of the 'r' ablation")
    p.add_argument("--r-method", default="salfmix", help="method of the 'r' ablation")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=Recipe.epochs)
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--lr", type=float, default=Recipe.lr)
    p.add_argument("--input-size", type=int, default=Recipe.input_size, help="MODEL.INPUT_SIZE")
    p.add_argument("--n", type=int, default=Recipe.n, help="MIX.N, the pooled saliency grid")
    p.add_argument("--r", type=float, default=Recipe.r, help="MIX.R of every method but the r ablation's")
    p.add_argument("--start-epoch", type=int, default=Recipe.start_epoch,
                   help="MIX.START_EPOCH (default 0: each method's own rule)")
    p.add_argument("--saliency", choices=("fresh", "cached"), default=Recipe.saliency, help="MIX.SALIENCY")
    p.add_argument("--checkpoint-period", type=int, default=Recipe.checkpoint_period, help="epochs between checkpoints")
    p.add_argument("--config-dir", default=os.path.join(ROOT, "configs", "pretrain"))
    p.add_argument("--config-pattern", default="cifar10_preact18_{method}.yaml")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (1: in this process; more: subprocesses)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep model_epoch*.pth of finished runs")
    p.add_argument("--no-report", action="store_true", help="do not write OUTPUT_ROOT/report")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--opts", nargs="*", default=[], help="further KEY VALUE overrides for every run (flags may follow)")
    return p


def _write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"))


def _load_pretrain_tool() -> Any:
    spec = importlib.util.spec_from_file_location("tool_pretrain", os.path.join(TOOLS, "pretrain.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prepare(run: StudyRun, cfg_file: str, opts: List[str], recipe: Recipe) -> None:
    """Create the folder, drop records of an attempt that left no checkpoint, write run_info.json."""
    os.makedirs(run.run_dir, exist_ok=True)
    if last_checkpoint(run.run_dir) is None:
        metrics = os.path.join(run.run_dir, "metrics.jsonl")
        if os.path.exists(metrics):
            os.remove(metrics)
    info = {"tag": run.tag, "method": run.method, "seed": run.seed, "r": run.r, "epochs": recipe.epochs,
            "config_file": os.path.relpath(cfg_file, ROOT), "opts": opts}
    _write_json(os.path.join(run.run_dir, "run_info.json"), info)


def _finish(run: StudyRun, wall_s: float, keep: bool) -> None:
    path = os.path.join(run.run_dir, "run_info.json")
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    info["wall_s"] = round(wall_s, 1)
    _write_json(path, info)
    if not keep:
        for ckpt in glob.glob(os.path.join(run.run_dir, "model_epoch*.pth")) + [os.path.join(run.run_dir, LAST)]:
            if os.path.exists(ckpt):
                os.remove(ckpt)


def _run_inprocess(tool: Any, cfg_file: str, opts: List[str], threads: int) -> Optional[str]:
    import torch

    torch.set_num_threads(threads)
    try:
        tool.main(tool.get_parser().parse_args(["--config-file", cfg_file, "--resume", *opts]))
    except SystemExit as err:
        if isinstance(err.code, int) and err.code >= 128:  # stopped by SIGINT / SIGTERM: the study stops too
            raise
        return str(err)
    except Exception as err:  # one failed run must not stop the study
        return f"{type(err).__name__}: {err}"
    return None


def _run_subprocess(run: StudyRun, cfg_file: str, opts: List[str], threads: int) -> Optional[str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.join(TOOLS, "pretrain.py"), "--config-file", cfg_file, "--resume", *opts]
    with open(os.path.join(run.run_dir, "train.log"), "a", encoding="utf-8") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        return f"exit status {rc} (see {os.path.join(run.run_dir, 'train.log')})"
    return None


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the study; returns ``{"ran", "skipped", "failed", "report", "wall_s"}``."""
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, input_size=args.input_size, n=args.n,
                    r=args.r, start_epoch=args.start_epoch, checkpoint_period=min(args.checkpoint_period, args.epochs),
                    saliency=args.saliency, extra=list(args.opts or []))
    try:
        tags = plan_tags(args.methods, args.ablations, args.r_values, args.r_method, args.r)
        runs = plan_runs(args.output_root, tags, args.seeds)
        files = {m: config_file(args.config_dir, args.config_pattern, m) for _, m, _ in tags}
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}")
    if not os.path.isdir(args.data_root):
        raise SystemExit(f"error: --data-root {args.data_root}: not a folder")
    todo = [run for run in runs if not run.done]
    print(f"study: {len(tags)} tags x {len(args.seeds)} seeds = {len(runs)} runs, {len(runs) - len(todo)} already done; "
          f"{recipe.epochs} epochs, lr {recipe.lr} steps {recipe.steps()}, batch {recipe.batch_size}, "
          f"input {recipe.input_size}px, n={recipe.n}", flush=True)
    if args.dry_run:
        for run in runs:
            print(f"  {'done' if run.done else 'todo'} {run.run_dir}: {files[run.method]} {' '.join(run_opts(run, recipe, args.data_root))}")
        return {"ran": [], "skipped": [r.run_dir for r in runs if r.done], "failed": {}, "report": None, "wall_s": 0.0}

    tool = _load_pretrain_tool() if args.jobs <= 1 else None
    start = time.time()
    ran: List[str] = []
    failed: Dict[str, str] = {}

    def one(index: int, run: StudyRun) -> Tuple[StudyRun, Optional[str], float]:
        opts = run_opts(run, recipe, args.data_root)
        _prepare(run, files[run.method], opts, recipe)
        t0 = time.time()
        if tool is not None:
            error = _run_inprocess(tool, files[run.method], opts, args.threads)
        else:
            error = _run_subprocess(run, files[run.method], opts, args.threads)
        return run, error, time.time() - t0

    def done(result: Tuple[StudyRun, Optional[str], float]) -> None:
        run, error, wall = result
        if error is None and run.done:
            _finish(run, wall, args.keep_checkpoints)
            ran.append(run.run_dir)
        else:
            failed[run.run_dir] = error or "no model_final.pth written"
        finished = len(ran) + len(failed)
        elapsed = time.time() - start
        eta = elapsed / finished * (len(todo) - finished)
        status = "done" if error is None else f"FAILED: {failed[run.run_dir]}"
        print(f"[{finished}/{len(todo)}] {run.tag} seed{run.seed} {status} in {format_duration(wall)}; "
              f"elapsed {format_duration(elapsed)}, eta {format_duration(eta)}", flush=True)

    if args.jobs <= 1:
        for i, run in enumerate(todo):
            done(one(i, run))
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(one, i, run) for i, run in enumerate(todo)]:
                done(future.result())
    wall = time.time() - start
    summary: Dict[str, Any] = {"ran": ran, "skipped": [r.run_dir for r in runs if r.done and r.run_dir not in ran],
                               "failed": failed, "report": None, "wall_s": wall}
    print(f"study: ran {len(ran)}, skipped {len(summary['skipped'])}, failed {len(failed)}, wall {format_duration(wall)}")
    for run_dir, error in failed.items():
        print(f"  failed {run_dir}: {error}", file=sys.stderr)
    finished = [r.run_dir for r in runs if r.done]
    if not args.no_report and finished:
        try:
            report = build_report(finished, title=f"{os.path.basename(os.path.normpath(args.output_root))}: "
                                                  f"final-epoch test error ({recipe.epochs} epochs)")
        except ReportError as err:
            raise SystemExit(f"error: {err}")
        summary["report"] = write_report(report, os.path.join(args.output_root, "report"))
        with open(summary["report"]["md"], encoding="utf-8") as f:
            print(f.read(), end="")
    return summary


if __name__ == "__main__":
    result = main(get_parser().parse_args())
    sys.exit(1 if result["failed"] else 0)
