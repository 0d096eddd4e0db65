"""A classification study: which pretraining runs (method or ablation tag x seed, with which
overrides), and running them.

Every run uses one config (``--config-file``: a base, each run setting its ``MIX.METHOD``;
default the CIFAR-10 PreActResNet-18 recipe ``pretrain/Base-CIFAR10-PreAct18.yaml``) plus the
study's ``KEY VALUE`` overrides, so it goes through exactly the code path of a pretraining run.
Ablations add tags:

- ``saliency``: SalfMix with and without saliency (``salfmix`` vs ``salfmix_random``, Table 9);
- ``pooling``: SalfMix with and without average pooling (``salfmix`` vs ``salfmix_nopool``, cf. Table 10);
- ``cutout``: Cutout with and without saliency (``cutout_saliency`` vs ``cutout``, Table 9);
- ``r``: the patch ratio r of one method (``salfmix_r0.1``...; the base r is the plain tag; cf. Figure 5).

Run folders are ``OUTPUT_ROOT/<tag>/seed<k>``. The runs go through the same stage code as the
pipeline (:mod:`salfmix.pipeline.stages`): a run whose ``run.json`` says finished is skipped, any
other is resumed, a folder holding a run of another method is refused. Before the first run
starts, every tag's config is loaded with its overrides and must train the tag's method. ``jobs``
1 runs them one after the other in this process; more runs that many pretraining child processes
at a time (each one's output in its ``train.log``), which SIGINT / SIGTERM reach once through
:class:`salfmix.pipeline.output.ChildSignals`: the running ones stop at a safe point and no new one
starts. Each run folder gets ``run_info.json`` (tag, method, seed, r, epochs, config file,
overrides; ``wall_s`` once finished), which the classification report reads for the row names.
"""

from __future__ import annotations

import glob
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pretrain.mixing import MIXERS
from salfmix.errors import PipelineError
from salfmix.pipeline import stages
from salfmix.pipeline.output import ChildSignals
from salfmix.runs.files import atomic_write_bytes
from salfmix.runs.folder import is_finished
from salfmix.runs.signals import Interrupted, exit_code, signal_name

__all__ = ["ABLATIONS", "Recipe", "StudyRun", "check_study", "execute_study", "plan_runs", "plan_tags", "run_opts"]

ABLATIONS: dict[str, tuple[str, ...]] = {
    "saliency": ("salfmix", "salfmix_random"),
    "pooling": ("salfmix", "salfmix_nopool"),
    "cutout": ("cutout", "cutout_saliency"),
    "r": (),
}
DEFAULT_R_VALUES = (0.1, 0.3, 0.5, 0.7)


@dataclass
class Recipe:
    """The study's training settings (the paper's CIFAR recipe, scaled down)."""

    epochs: int = 20
    batch_size: int = 20
    lr: float = 0.02  # the paper's 0.05 at batch 64, scaled linearly to batch 20
    input_size: int = 16
    n: int = 4
    r: float = 0.3
    start_epoch: int = 0  # 0: each method's own rule (2 for SalfMix/HybridMix, 1 for the baselines)
    checkpoint_period: int = 5
    saliency: str = "fresh"
    extra: list[str] = field(default_factory=list)
    # A base config (each run sets MIX.METHOD), a leaf of one method, or a path with {method}.
    config: str = "pretrain/Base-CIFAR10-PreAct18.yaml"

    def config_file(self, method: str) -> str:
        """The config file ``method`` runs from (see :func:`pretrain.config.method_config`)."""
        from pretrain.config import METHOD_FIELD
        from salfmix.config_files import resolve

        return resolve(self.config.replace(METHOD_FIELD, method))

    def sets_method(self, method: str) -> bool:
        """Whether the runs of ``method`` set MIX.METHOD (their config is a base, which does not)."""
        from pretrain.config import config_sets

        return config_sets(self.config_file(method), "MIX.METHOD") is None

    def steps(self) -> tuple[int, ...]:
        """Learning-rate steps (x0.1) after 50% and 75% of the epochs (those inside the run)."""
        marks = {int(math.floor(self.epochs * f)) for f in (0.5, 0.75)}
        return tuple(sorted(s for s in marks if 1 <= s < self.epochs))


@dataclass
class StudyRun:
    """One planned run: its tag (row name), method, seed, patch ratio and folder."""

    tag: str
    method: str
    seed: int
    r: float
    run_dir: str

    @property
    def done(self) -> bool:
        """Whether the run finished: its ``run.json`` says so (a folder from before the manifests:
        its model_final.pth exists). :func:`execute_study` runs the others."""
        return is_finished(self.run_dir)


def r_tag(method: str, r: float) -> str:
    """The tag of ``method`` at patch ratio ``r`` (e.g. ``salfmix_r0.1``)."""
    return f"{method}_r{r:g}"


def plan_tags(
    methods: Sequence[str],
    ablations: Sequence[str],
    r_values: Sequence[float] = DEFAULT_R_VALUES,
    r_method: str = "salfmix",
    base_r: float = 0.3,
) -> list[tuple[str, str, float]]:
    """``(tag, method, r)`` for every row of the study, without duplicates, in MIXERS order.

    The methods asked for come first, then what the ablations need; an r equal to ``base_r`` is
    the plain method's row. Unknown names raise ValueError listing the valid ones.
    """
    for m in list(methods) + [r_method]:
        if m not in MIXERS:
            raise ValueError(f"unknown method {m!r}; valid: {', '.join(MIXERS)}")
    for a in ablations:
        if a not in ABLATIONS:
            raise ValueError(f"unknown ablation {a!r}; valid: {', '.join(ABLATIONS)}")
    wanted = set(methods)
    for a in ablations:
        wanted.update(ABLATIONS[a])
    tags = [(m, m, base_r) for m in MIXERS if m in wanted]
    if "r" in ablations:
        for r in sorted(set(float(v) for v in r_values)):
            if not 0 < r < 1:
                raise ValueError(f"r value {r}: expected 0 < r < 1")
            if math.isclose(r, base_r):
                if r_method not in wanted:
                    tags.append((r_method, r_method, base_r))
            else:
                tags.append((r_tag(r_method, r), r_method, r))
    return tags


def plan_runs(output_root: str, tags: Sequence[tuple[str, str, float]], seeds: Sequence[int]) -> list[StudyRun]:
    """Every (tag, seed) run, seed-major (all tags of the first seed first: partial studies stay balanced)."""
    return [
        StudyRun(tag, method, int(seed), r, os.path.join(output_root, tag, f"seed{seed}"))
        for seed in seeds
        for tag, method, r in tags
    ]


def run_opts(run: StudyRun, recipe: Recipe, data_root: str) -> list[str]:
    """The ``KEY VALUE`` overrides of one run on top of its config (``MIX.METHOD`` first where
    the config is a base)."""
    opts = {
        **({"MIX.METHOD": run.method} if recipe.sets_method(run.method) else {}),
        "DATA.ROOT": data_root,
        "OUTPUT_DIR": run.run_dir,
        "SEED": run.seed,
        "MODEL.INPUT_SIZE": recipe.input_size,
        "MIX.N": recipe.n,
        "MIX.R": run.r,
        "MIX.START_EPOCH": recipe.start_epoch,
        "MIX.SALIENCY": recipe.saliency,
        "SOLVER.MAX_EPOCHS": recipe.epochs,
        "SOLVER.BATCH_SIZE": recipe.batch_size,
        "SOLVER.BASE_LR": recipe.lr,
        "SOLVER.STEPS": "(" + "".join(f"{s}," for s in recipe.steps()) + ")",
        "TRAIN.EVAL_PERIOD": recipe.epochs,  # evaluate once, after the last epoch
        "TRAIN.CHECKPOINT_PERIOD": recipe.checkpoint_period,
        "TRAIN.KEEP_CHECKPOINTS": 1,
        "TRAIN.PROGRESS": False,
    }
    out: list[str] = []
    for key, value in opts.items():
        out += [key, str(value)]
    return out + list(recipe.extra)


def format_duration(seconds: float | None) -> str:
    """``1h02m03s`` style."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"))


def check_study(runs: Sequence[StudyRun], recipe: Recipe, data_root: str) -> None:
    """Load every tag's config with its overrides (one seed is enough: seeds differ in SEED and
    the folder only) and check the folders; a finished run is reused only when its config is the
    one asked for now (outside the pretraining stage's ``SAME_RUN`` keys). Raises
    :class:`PipelineError` before anything runs."""
    from pretrain.config import load_config, method_config
    from pretrain.engine.runner import SAME_RUN, defaults_text
    from salfmix.runs.folder import finished_run_drift
    from salfmix.runs.manifest import describe_drift

    if os.path.exists(recipe_root(runs)) and not os.path.isdir(recipe_root(runs)):
        raise PipelineError(f"--output-root {recipe_root(runs)}: exists and is not a folder")
    checked = set()
    defaults = defaults_text()
    from salfmix.pipeline.checks import refuse_live_run

    for run in runs:
        refuse_live_run(run.run_dir, run.tag)
        if stages.pretrain_state(run.run_dir, run.method) == stages.FINISHED:
            try:
                text = load_config(recipe.config_file(run.method), run_opts(run, recipe, data_root)).dump()
            except (ValueError, FileNotFoundError) as err:
                raise PipelineError(f"{run.tag}: {err}") from None
            drift = finished_run_drift(run.run_dir, text, SAME_RUN, defaults)
            if drift:
                raise PipelineError(
                    f"{run.run_dir} holds a finished run whose config differs from the one asked for "
                    f"now in {describe_drift(drift)}; it is never reused for another recipe: use "
                    "another --output-root, or ask for the recipe it ran (nothing was run)"
                )
        if run.tag not in checked:
            checked.add(run.tag)
            try:
                method_config(recipe.config, run.method, recipe.extra)
                load_config(recipe.config_file(run.method), run_opts(run, recipe, data_root))
            except (ValueError, FileNotFoundError) as err:
                raise PipelineError(f"{run.tag}: {err}") from None
        stages.pretrain_state(run.run_dir, run.method)  # refuses a folder of another method


def recipe_root(runs: Sequence[StudyRun]) -> str:
    """The study's output root (runs are ``ROOT/<tag>/seed<k>``)."""
    return os.path.dirname(os.path.dirname(runs[0].run_dir)) if runs else "."


def _prepare(run: StudyRun, cfg_file: str, opts: list[str], recipe: Recipe) -> None:
    os.makedirs(run.run_dir, exist_ok=True)
    info = {
        "tag": run.tag,
        "method": run.method,
        "seed": run.seed,
        "r": run.r,
        "epochs": recipe.epochs,
        "config_file": cfg_file,
        "opts": opts,
    }
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


def _in_process(cfg_file: str, opts: list[str], resume: bool, threads: int, ctx: stages.Context) -> str | None:
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


def _child(
    run: StudyRun,
    cfg_file: str,
    opts: list[str],
    resume: bool,
    threads: int,
    signals: ChildSignals,
    ctx: stages.Context,
) -> str | None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [ctx.python, "-m", stages.PRETRAIN_MODULE, "--config-file", cfg_file, *opts]
    log = os.path.join(run.run_dir, "train.log")
    rc = signals.run(cmd + (["--resume"] if resume else []), env=env, log_path=log)
    if rc in (exit_code(signal.SIGINT), exit_code(signal.SIGTERM)) and signals.signum is None:
        # stopped by a signal sent to the run itself (a scheduler, `kill`): the study stops too
        signals.signum = rc - 128
    if rc > 128:
        return f"ended by {signal_name(rc - 128)} (see {log})"
    return f"exit status {rc} (see {log})" if rc else None


def execute_study(
    runs: Sequence[StudyRun],
    recipe: Recipe,
    data_root: str,
    jobs: int = 1,
    threads: int = 1,
    keep_checkpoints: bool = False,
    ctx: stages.Context | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every unfinished run; returns ``{"ran", "skipped", "failed", "wall_s"}`` (folders, and
    ``{folder: error}`` for the failed ones). Raises :class:`salfmix.runs.signals.Interrupted` after a
    stop signal, once the running runs have stopped."""
    ctx = ctx or stages.Context()
    states = {run.run_dir: stages.pretrain_state(run.run_dir, run.method) for run in runs}
    todo = [run for run in runs if states[run.run_dir] != stages.FINISHED]
    start = time.time()
    ran: list[str] = []
    failed: dict[str, str] = {}
    signals = ChildSignals()

    def one(run: StudyRun) -> tuple[StudyRun, str | None, float]:
        if signals.signum is not None:
            return run, "not started (stop requested)", 0.0
        opts = run_opts(run, recipe, data_root)
        _prepare(run, recipe.config_file(run.method), opts, recipe)
        resume = states[run.run_dir] == stages.RESUME
        t0 = time.time()
        if jobs <= 1:
            error = _in_process(recipe.config_file(run.method), opts, resume, threads, ctx)
        else:
            error = _child(run, recipe.config_file(run.method), opts, resume, threads, signals, ctx)
        return run, error, time.time() - t0

    def done(result: tuple[StudyRun, str | None, float]) -> None:
        run, error, wall = result
        if error is None and stages.pretrain_state(run.run_dir, run.method) == stages.FINISHED:
            _finish(run, wall, keep_checkpoints)
            ran.append(run.run_dir)
        else:
            failed[run.run_dir] = error or "not finished (see its run.json)"
        count = len(ran) + len(failed)
        elapsed = time.time() - start
        eta = elapsed / count * (len(todo) - count)
        status = "done" if run.run_dir in ran else f"FAILED: {failed[run.run_dir]}"
        say(
            f"[{count}/{len(todo)}] {run.tag} seed{run.seed} {status} in {format_duration(wall)}; "
            f"elapsed {format_duration(elapsed)}, eta {format_duration(eta)}"
        )

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
    skipped = [r.run_dir for r in runs if r.run_dir not in ran and states[r.run_dir] == stages.FINISHED]
    return {"ran": ran, "skipped": skipped, "failed": failed, "wall_s": time.time() - start}


def study_report(runs: Sequence[StudyRun], report_out: str, title: str, show: bool = True) -> str:
    """The classification report (:mod:`pretrain.report`) of the finished ``runs`` in
    ``report_out``; returns its Markdown. Unfinished runs are named in a :class:`PipelineError`
    raised after the report of the others is written."""
    from pretrain.report import ReportError, build_report
    from pretrain.report_format import write_report

    finished = [r.run_dir for r in runs if r.done]
    text = ""
    if finished:
        try:
            paths = write_report(build_report(finished, title=title), report_out)
        except ReportError as err:
            raise PipelineError(f"report: {err}") from None
        with open(paths["md"], encoding="utf-8") as f:
            text = f.read()
        if show:
            print(text, end="", flush=True)
    missing = [r.run_dir for r in runs if not r.done]
    if missing:
        raise PipelineError(f"report: {len(missing)} of {len(runs)} runs did not finish: {', '.join(missing)}")
    return text
