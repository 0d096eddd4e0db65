"""A pretraining run in its folder: the stage's library entry point, used by ``salfmix.cli.pretrain``.

:func:`run_pretraining` wraps the :class:`~pretrain.engine.trainer.Trainer` in the run layer
(:mod:`runs`): the lock on ``OUTPUT_DIR``, the manifest ``run.json``, the refusal of a new run
over another run's files and of a ``--resume`` whose config drifted, the stale temp files of a
killed run, and SIGINT / SIGTERM stopping at the end of a step. Every refusal or failure is a
one-line exception (:class:`salfmix.errors.RunError`, ``ValueError``, ``FileNotFoundError``,
:class:`~pretrain.engine.trainer.NonFiniteLossError`) or :class:`salfmix.runs.signals.Interrupted`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fvcore.common.config import CfgNode

from pretrain.engine.metrics import read_records
from salfmix.errors import RunError
from salfmix.runs.folder import FINISHED, RESUME, RunFolder
from salfmix.runs.signals import StopSignals

# Keys in which a request may differ from a finished run and still ask for that very run (where the
# run, its data and caches are; how it reports, how often it reads its loss, whether it compiles:
# the same numbers; the evaluation batch): a --resume, a pipeline or a study that finds the run
# finished reuses it only then. SOLVER.MAX_EPOCHS is not among them: more epochs is another run.
SAME_RUN = (
    "OUTPUT_DIR",
    "TRAIN.PROGRESS",
    "TRAIN.EVAL_PERIOD",
    "TRAIN.KEEP_CHECKPOINTS",
    "TRAIN.CHECKPOINT_PERIOD",
    "TRAIN.LOG_PERIOD",
    "TRAIN.COMPILE",
    "DATA.ROOT",
    "DATA.CACHE_DIR",
    "TEST.BATCH_SIZE",
)
# Keys a --resume of an unfinished run may change: those, and MAX_EPOCHS (not below the
# checkpoint's epoch: the trainer refuses that). Everything else would make the folder's weights a
# mix of two configs.
RESUME_MAY_CHANGE = (*SAME_RUN, "SOLVER.MAX_EPOCHS")
# The files of a pretraining run besides run.json, config.yaml and model_final.pth.
ARTEFACTS = ("metrics.jsonl", "model_epoch*.pth", "last_checkpoint", "tb")


def defaults_text() -> str:
    """The pretraining config's defaults, resolved as a run's config.yaml is: a run made before a
    key existed compares as if it had the key's default (see :func:`salfmix.runs.manifest.config_drift`)."""
    from pretrain.config import get_cfg_defaults

    return get_cfg_defaults().dump()


@dataclass
class PretrainResult:
    """How :func:`run_pretraining` ended: ``status`` "finished" (trained now) or "already finished"."""

    status: str
    output_dir: str
    record: dict[str, float] = field(default_factory=dict)
    resumed_from: str | None = None
    start_epoch: int = 1


def run_pretraining(
    cfg: CfgNode,
    resume: bool = False,
    command: Sequence[str] | None = None,
    resume_cmd: str = "",
    log: Callable[[str], None] = print,
) -> PretrainResult:
    """Train ``cfg`` in ``cfg.OUTPUT_DIR`` under the rules of :mod:`salfmix.runs.folder`.

    ``resume``: continue from the newest checkpoint (a ``--resume`` of a finished run returns
    status "already finished" and touches nothing). ``command`` (default: this process's) and
    ``resume_cmd`` are recorded in ``run.json``; ``log`` says where a resume starts. Under torchrun
    only rank 0 locks, writes and logs.
    """
    rank = int(os.environ.get("RANK", "0"))
    run = RunFolder(
        cfg.OUTPUT_DIR,
        stage="pretrain",
        config_text=cfg.dump(),
        resume=resume,
        method=cfg.MIX.METHOD,
        command=command if command is not None else [sys.executable, *sys.argv],
        resume_command=resume_cmd,
        allowed=RESUME_MAY_CHANGE,
        artefacts=ARTEFACTS,
        main=rank == 0,
        same_run=SAME_RUN,
        defaults_text=defaults_text(),
    )
    if run.open() == FINISHED:
        records = read_records(os.path.join(cfg.OUTPUT_DIR, "metrics.jsonl"))
        return PretrainResult("already finished", cfg.OUTPUT_DIR, records[-1] if records else {})
    with run.recording():
        from pretrain.engine.trainer import Trainer

        trainer = Trainer(cfg)  # checks the data, the batch size and the mixer's geometry up front
        resumed = None
        if run.mode == RESUME:
            try:
                resumed = trainer.resume()
            except (ValueError, KeyError, RuntimeError, EOFError) as err:
                raise RunError(f"--resume: {err}") from None
            if rank == 0:
                log(
                    f"resuming from {resumed} (epoch {trainer.start_epoch})"
                    if resumed
                    else "no checkpoint found: starting from epoch 1"
                )
        # What the run trained on, beside the config (whose DATA.ROOT may move): reports never
        # average runs of different data.
        data = {
            "name": cfg.DATA.NAME,
            "classes": trainer.data.num_classes,
            "train_images": len(trainer.data.train),
            "test_images": len(trainer.data.test),
        }
        run.start(epoch=trainer.start_epoch - 1, data=data)
        with StopSignals() as stop:
            trainer.should_stop = lambda: stop.signum
            trainer.on_checkpoint = lambda epoch: run.update(epoch=epoch)
            record = trainer.train()
        finite = {k: v for k, v in record.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        run.finish(epoch=cfg.SOLVER.MAX_EPOCHS, metrics=finite)
        return PretrainResult("finished", cfg.OUTPUT_DIR, record, resumed, trainer.start_epoch)
