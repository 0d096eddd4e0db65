"""The run layer (:mod:`runs`) for a detection run: lock, manifest, resume rules, stop signals.

What a detection run folder adds to Detectron2's behaviour (see detection/README.md):

- training takes the lock on ``OUTPUT_DIR`` and writes ``run.json``; a new run into a folder
  with another run's files, or any run into a finished one, is refused; ``--resume`` of a
  finished run says so and returns; ``--resume`` with a config that differs from the run's
  ``config.yaml`` outside :data:`RESUME_MAY_CHANGE` is refused (both compared after the rescaling
  to this world size, so another GPU count is drift too: it changes the batch and schedule);
- a negative ``SEED`` of a ``--resume`` takes the seed the run recorded;
- ``--eval-only`` also takes the lock, and leaves a training run's ``config.yaml`` as it was;
- SIGINT / SIGTERM stop after the current iteration with a checkpoint (:class:`StopHook`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

import yaml

import detection  # noqa: F401  (before Detectron2)
from detection.config import load_config
from salfmix.errors import DetectionSetupError
from salfmix.runs.files import atomic_write_bytes
from salfmix.runs.folder import FINISHED, RunFolder, is_finished
from salfmix.runs.lock import RunLock
from salfmix.runs.signals import Interrupted, StopSignals

from detectron2.config import CfgNode
from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = [
    "ARTEFACTS",
    "RESUME_MAY_CHANGE",
    "StopHook",
    "adopt_recorded_seed",
    "already_finished",
    "check_training_run",
    "keep_run_config",
    "lock_for_evaluation",
    "open_training_run",
]

# Keys a --resume may change: where the run is, how often it checkpoints / evaluates / logs, the
# loader's worker count, and SOLVER.MAX_ITER (extended only; checked below).
RESUME_MAY_CHANGE = (
    "OUTPUT_DIR",
    "SOLVER.MAX_ITER",
    "SOLVER.CHECKPOINT_PERIOD",
    "TEST.EVAL_PERIOD",
    "DATALOADER.NUM_WORKERS",
    "VIS_PERIOD",
)
# Keys in which a request may differ from a finished run and still ask for that very run (where it
# is, how often it logs and checkpoints, the loader's workers); SOLVER.MAX_ITER is not among them.
SAME_RUN = ("OUTPUT_DIR", "SOLVER.CHECKPOINT_PERIOD", "TEST.EVAL_PERIOD", "DATALOADER.NUM_WORKERS", "VIS_PERIOD")
# Detectron2's files of a run besides run.json, config.yaml and model_final.pth.
ARTEFACTS = ("metrics.json", "model_*.pth", "last_checkpoint", "eval_results.json", "events.out.tfevents.*")


def defaults_text() -> str:
    """The detection config's defaults (Detectron2's plus ours): a run made before a key existed
    compares as if it had the key's default (see :func:`salfmix.runs.manifest.config_drift`)."""
    from detection.config import get_detection_cfg

    return get_detection_cfg().dump()


def already_finished(args: argparse.Namespace, world_size: int = 1) -> str | None:
    """For a training ``--resume`` into a finished run that asked for that very run: the line
    saying so (nothing is touched); else None. A config that differs from the finished run's
    (outside :data:`SAME_RUN`, compared as it would run on ``world_size`` processes) is refused
    with :class:`salfmix.errors.RunRefused` naming the keys."""
    if not args.resume or getattr(args, "eval_only", False):
        return None
    cfg = load_config(args.config_file, args.opts)
    if not (os.path.isdir(cfg.OUTPUT_DIR) and is_finished(cfg.OUTPUT_DIR)):
        return None
    from detectron2.engine import DefaultTrainer

    adopt_recorded_seed(cfg, True)
    scaled = DefaultTrainer.auto_scale_workers(cfg, world_size)
    RunFolder(
        cfg.OUTPUT_DIR,
        stage="detection",
        config_text=scaled.dump(),
        resume=True,
        allowed=RESUME_MAY_CHANGE,
        artefacts=ARTEFACTS,
        same_run=SAME_RUN,
        defaults_text=defaults_text(),
    ).check()
    return f"{cfg.OUTPUT_DIR}: the run is already finished (model_final.pth); nothing to do"


def _recorded_config(folder: str) -> dict:
    try:
        with open(os.path.join(folder, "config.yaml"), encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return {}


def adopt_recorded_seed(cfg: CfgNode, resume: bool) -> None:
    """A ``--resume`` with a negative SEED (Detectron2's "draw one") continues with the run's seed."""
    if resume and cfg.SEED < 0:
        seed = _recorded_config(cfg.OUTPUT_DIR).get("SEED")
        if isinstance(seed, int) and seed >= 0:
            cfg.SEED = seed


def check_training_run(cfg: CfgNode, args: argparse.Namespace, world_size: int) -> None:
    """The checks of :func:`open_training_run`, read-only, in a process about to launch
    ``world_size`` workers: a refusal is one line here rather than a traceback from a worker."""
    if getattr(args, "eval_only", False):
        return
    from detectron2.engine import DefaultTrainer

    cfg = cfg.clone()
    adopt_recorded_seed(cfg, args.resume)
    scaled = DefaultTrainer.auto_scale_workers(cfg, world_size)
    RunFolder(
        cfg.OUTPUT_DIR,
        stage="detection",
        config_text=scaled.dump(),
        resume=args.resume,
        allowed=RESUME_MAY_CHANGE,
        artefacts=ARTEFACTS,
        same_run=SAME_RUN,
        defaults_text=defaults_text(),
    ).check()


def open_training_run(cfg: CfgNode, args: argparse.Namespace) -> RunFolder:
    """Open the run folder of a training run (every process; only the main one locks and writes).

    Check its ``mode``: :data:`salfmix.runs.folder.FINISHED` means a ``--resume`` of a finished run
    (nothing was touched). Otherwise ``run.json`` says ``running``. Raises
    :class:`salfmix.errors.RunError` subclasses with one-line messages.
    """
    run = RunFolder(
        cfg.OUTPUT_DIR,
        stage="detection",
        config_text=cfg.dump(),
        resume=args.resume,
        method=cfg.SALFMIX.METHOD,
        resume_command=getattr(args, "resume_command", ""),
        command=[sys.executable, *sys.argv],
        allowed=RESUME_MAY_CHANGE,
        artefacts=ARTEFACTS,
        main=comm.is_main_process(),
        same_run=SAME_RUN,
        defaults_text=defaults_text(),
    )
    if run.open() == FINISHED:
        return run
    try:
        old_max = _recorded_config(cfg.OUTPUT_DIR).get("SOLVER", {}).get("MAX_ITER")
        if args.resume and isinstance(old_max, int) and cfg.SOLVER.MAX_ITER < old_max:
            raise DetectionSetupError(
                f"--resume: SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER} is below the run's "
                f"{old_max}: it may be extended, not shortened"
            )
        run.start()
    except BaseException:
        run.close()
        raise
    return run


def check_evaluation_target(folder: str, weights: str) -> None:
    """Refuse an ``--eval-only`` that would write into a training run's results: an evaluation never
    writes into a finished run, except to fill in the missing final results of its own
    ``model_final.pth``; nor into an unfinished one (its results come from its own training); nor
    over an evaluation folder's results of other weights. One line, nothing touched."""
    from detection.files import EVAL_RESULTS_FILE
    from detection.report import has_final_results
    from salfmix.errors import RunRefused
    from salfmix.runs.manifest import read_manifest

    if not os.path.isdir(folder):
        return
    manifest = read_manifest(folder)
    own = os.path.join(folder, "model_final.pth")
    training = (manifest or {}).get("stage") == "detection" or os.path.isfile(own)
    same = bool(weights) and os.path.exists(weights) and os.path.realpath(weights) == os.path.realpath(own)
    if training:
        if not is_finished(folder):
            raise RunRefused(
                f"--eval-only: OUTPUT_DIR {folder} holds an unfinished training run; its results come "
                "from its own training: evaluate into another OUTPUT_DIR"
            )
        if not same:
            raise RunRefused(
                f"--eval-only: MODEL.WEIGHTS {weights} is not {own}: an evaluation of other weights never "
                f"writes into the finished run in {folder}; evaluate into another OUTPUT_DIR"
            )
        if has_final_results(folder):
            raise RunRefused(
                f"--eval-only: {os.path.join(folder, EVAL_RESULTS_FILE)} already holds the finished run's "
                "final results, which are never overwritten; evaluate into another OUTPUT_DIR to "
                "check them again"
            )
        return
    results = os.path.join(folder, EVAL_RESULTS_FILE)
    if os.path.isfile(results):
        try:
            with open(results, encoding="utf-8") as f:
                recorded = (yaml.safe_load(f) or {}).get("weights")
        except (OSError, yaml.YAMLError, AttributeError):
            recorded = None
        if recorded and weights and os.path.realpath(recorded) != os.path.realpath(weights):
            raise RunRefused(
                f"--eval-only: {results} holds the results of {recorded}; those of {weights} would "
                "replace them: evaluate into another OUTPUT_DIR"
            )


def truncate_metrics(folder: str, start_iter: int) -> None:
    """Cut Detectron2's ``metrics.json`` (one JSON line per logged iteration, appended) back to the
    iterations before ``start_iter``: a run resumed from an earlier checkpoint logs them again."""
    import json

    path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(path):
        return
    kept, dropped = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # a torn last line of a killed writer
                dropped += 1
                continue
            if (
                isinstance(record, dict)
                and isinstance(record.get("iteration"), int)
                and record["iteration"] >= start_iter
            ):
                dropped += 1
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        atomic_write_bytes(path, "".join(kept).encode("utf-8"))


def lock_for_evaluation(folder: str) -> RunLock | None:
    """The folder's lock for an ``--eval-only`` in the main process (None elsewhere)."""
    if not comm.is_main_process():
        return None
    os.makedirs(folder, exist_ok=True)
    return RunLock(folder).acquire()


@contextlib.contextmanager
def keep_run_config(folder: str, active: bool) -> Iterator[None]:
    """Put a training run's ``config.yaml`` back after Detectron2's ``default_setup`` rewrote it
    (``--eval-only`` in the run's own folder must not change how the run says it was trained)."""
    path = os.path.join(folder, "config.yaml")
    saved = None
    if active and comm.is_main_process() and os.path.isfile(path):
        with open(path, "rb") as f:
            saved = f.read()
    yield
    if saved is not None:
        atomic_write_bytes(path, saved)


class StopHook(HookBase):
    """After every iteration: on a stop signal (on any process), save a checkpoint and raise
    :class:`salfmix.runs.signals.Interrupted` (which Detectron2's loop does not log as a crash)."""

    def __init__(self, stop: StopSignals) -> None:
        self.stop = stop

    def after_step(self) -> None:
        signum = self.stop.signum or 0
        if comm.get_world_size() > 1:  # every process stops at the same iteration, or the others hang
            signum = max(comm.all_gather(signum))
        if not signum:
            return
        iteration = self.trainer.iter
        self.trainer.checkpointer.save(f"model_{iteration:07d}", iteration=iteration)  # main process only
        comm.synchronize()
        raise Interrupted(signum, f"after iteration {iteration + 1} of {self.trainer.max_iter}")
