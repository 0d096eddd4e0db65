"""A classification study run: every (tag, seed) of a :mod:`pretrain.study` plan, then its report.

The runs go through the same stage code as the pipeline (:mod:`pipeline.stages`): a run whose
``run.json`` says finished is skipped, any other is resumed, a folder holding a run of another
method is refused. Before the first run starts, every tag's config is loaded with its overrides
and must train the tag's method. ``jobs`` 1 runs them one after the other in this process;
more runs that many ``tools/pretrain.py`` child processes at a time (each one's output in its
``train.log``), which SIGINT / SIGTERM reach once through :class:`pipeline.output.ChildSignals`:
the running ones stop at a safe point and no new one starts. Each run folder gets
``run_info.json`` (tag, method, seed, r, epochs, config file, overrides; ``wall_s`` once
finished), which ``tools/cls_report.py`` reads for the row names.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pipeline import stages
from pipeline.output import ChildSignals
from pipeline.plan import PipelineError
from pretrain.study import Recipe, StudyRun, format_duration, run_opts
from runs.files import atomic_write_bytes
from runs.manifest import PROJECT_DIR
from runs.signals import Interrupted, exit_code, signal_name

__all__ = ["check_study", "execute_study"]


def _write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"))


def check_study(runs: Sequence[StudyRun], files: Dict[str, str], recipe: Recipe, data_root: str) -> None:
    """Load every tag's config with its overrides (one seed is enough: seeds differ in SEED and
    the folder only) and check the folders; a finished run is reused only when its config is the
    one asked for now (outside the pretraining stage's ``SAME_RUN`` keys). Raises
    :class:`PipelineError` before anything runs."""
    from pretrain.config import load_config
    from pretrain.engine.runner import SAME_RUN, defaults_text
    from runs.folder import finished_run_drift
    from runs.manifest import describe_drift

    if os.path.exists(recipe_root(runs)) and not os.path.isdir(recipe_root(runs)):
        raise PipelineError(f"--output-root {recipe_root(runs)}: exists and is not a folder")
    checked = set()
    defaults = defaults_text()
    from pipeline.checks import refuse_live_run

    for run in runs:
        refuse_live_run(run.run_dir, run.tag)
        if stages.pretrain_state(run.run_dir, run.method) == stages.DONE:
            try:
                text = load_config(files[run.method], run_opts(run, recipe, data_root)).dump()
            except (ValueError, FileNotFoundError) as err:
                raise PipelineError(f"{run.tag}: {err}") from None
            drift = finished_run_drift(run.run_dir, text, SAME_RUN, defaults)
            if drift:
                raise PipelineError(f"{run.run_dir} holds a finished run whose config differs from the one asked for "
                                    f"now in {describe_drift(drift)}; it is never reused for another recipe: use "
                                    "another --output-root, or ask for the recipe it ran (nothing was run)")
        if run.tag not in checked:
            checked.add(run.tag)
            try:
                cfg = load_config(files[run.method], run_opts(run, recipe, data_root))
            except (ValueError, FileNotFoundError) as err:
                raise PipelineError(f"{run.tag}: {err}") from None
            if cfg.MIX.METHOD != run.method:
                raise PipelineError(f"{run.tag}: {files[run.method]} trains MIX.METHOD {cfg.MIX.METHOD}, not "
                                    f"{run.method} (see --config-pattern)")
        stages.pretrain_state(run.run_dir, run.method)  # refuses a folder of another method


def recipe_root(runs: Sequence[StudyRun]) -> str:
    """The study's output root (runs are ``ROOT/<tag>/seed<k>``)."""
    return os.path.dirname(os.path.dirname(runs[0].run_dir)) if runs else "."


def _prepare(run: StudyRun, cfg_file: str, opts: List[str], recipe: Recipe) -> None:
    os.makedirs(run.run_dir, exist_ok=True)
    info = {"tag": run.tag, "method": run.method, "seed": run.seed, "r": run.r, "epochs": recipe.epochs,
            "config_file": os.path.relpath(cfg_file, PROJECT_DIR), "opts": opts}
    _write_json(os.path.join(run.run_dir, "run_info.json"), info)


def _finish(run: StudyRun, wall_s: float, keep: bool) -> None:
    path = os.path.join(run.run_dir, "run_info.json")
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    info["wall_s"] = round(wall_s, 1)
    _write_json(path, info)
    if not keep:  # the finished run is protected by its run.json, not by its checkpoints
        checkpoints = glob.glob(os.path.join(run.run_dir, "model_epoch*.pth"))
        for ckpt in checkpoints + [os.path.join(run.run_dir, "last_checkpoint")]:
            if os.path.exists(ckpt):
                os.remove(ckpt)


def _in_process(cfg_file: str, opts: List[str], resume: bool, threads: int, ctx: stages.Context) -> Optional[str]:
    import torch

    torch.set_num_threads(threads)
    try:
        print(stages.run_pretrain(cfg_file, opts, resume, ctx), flush=True)
    except stages.StageFailed as err:
        return str(err)
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as err:  # one failed run must not stop the study
        return f"{type(err).__name__}: {err}"
    return None


def _child(run: StudyRun, cfg_file: str, opts: List[str], resume: bool, threads: int, signals: ChildSignals,
           ctx: stages.Context) -> Optional[str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [ctx.python, os.path.join(stages.TOOLS, "pretrain.py"), "--config-file", cfg_file, *opts]
    log = os.path.join(run.run_dir, "train.log")
    rc = signals.run(cmd + (["--resume"] if resume else []), env=env, log_path=log)
    if rc in (exit_code(signal.SIGINT), exit_code(signal.SIGTERM)) and signals.signum is None:
        # stopped by a signal sent to the run itself (a scheduler, `kill`): the study stops too
        signals.signum = rc - 128
    if rc > 128:
        return f"ended by {signal_name(rc - 128)} (see {log})"
    return f"exit status {rc} (see {log})" if rc else None


def execute_study(runs: Sequence[StudyRun], files: Dict[str, str], recipe: Recipe, data_root: str, jobs: int = 1,
                  threads: int = 1, keep_checkpoints: bool = False, ctx: Optional[stages.Context] = None,
                  say: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run every unfinished run; returns ``{"ran", "skipped", "failed", "wall_s"}`` (folders, and
    ``{folder: error}`` for the failed ones). Raises :class:`runs.signals.Interrupted` after a
    stop signal, once the running runs have stopped."""
    ctx = ctx or stages.Context()
    states = {run.run_dir: stages.pretrain_state(run.run_dir, run.method) for run in runs}
    todo = [run for run in runs if states[run.run_dir] != stages.DONE]
    start = time.time()
    ran: List[str] = []
    failed: Dict[str, str] = {}
    signals = ChildSignals()

    def one(run: StudyRun) -> Tuple[StudyRun, Optional[str], float]:
        if signals.signum is not None:
            return run, "not started (stop requested)", 0.0
        opts = run_opts(run, recipe, data_root)
        _prepare(run, files[run.method], opts, recipe)
        resume = states[run.run_dir] == stages.RESUME
        t0 = time.time()
        if jobs <= 1:
            error = _in_process(files[run.method], opts, resume, threads, ctx)
        else:
            error = _child(run, files[run.method], opts, resume, threads, signals, ctx)
        return run, error, time.time() - t0

    def done(result: Tuple[StudyRun, Optional[str], float]) -> None:
        run, error, wall = result
        if error is None and stages.pretrain_state(run.run_dir, run.method) == stages.DONE:
            _finish(run, wall, keep_checkpoints)
            ran.append(run.run_dir)
        else:
            failed[run.run_dir] = error or "not finished (see its run.json)"
        count = len(ran) + len(failed)
        elapsed = time.time() - start
        eta = elapsed / count * (len(todo) - count)
        status = "done" if run.run_dir in ran else f"FAILED: {failed[run.run_dir]}"
        say(f"[{count}/{len(todo)}] {run.tag} seed{run.seed} {status} in {format_duration(wall)}; "
            f"elapsed {format_duration(elapsed)}, eta {format_duration(eta)}")

    if jobs <= 1:
        for run in todo:
            done(one(run))
    else:
        with signals, ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(one, run) for run in todo]:
                done(future.result())
        if signals.signum is not None:
            raise Interrupted(signals.signum, f"after {len(ran)} of {len(todo)} runs")
    sys.stdout.flush()
    skipped = [r.run_dir for r in runs if r.run_dir not in ran and states[r.run_dir] == stages.DONE]
    return {"ran": ran, "skipped": skipped, "failed": failed, "wall_s": time.time() - start}
