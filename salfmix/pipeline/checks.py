"""Everything a pipeline command can check before its first run starts, from the folders' manifests.

:func:`check_plans` runs after :func:`salfmix.pipeline.plan.plan_pipelines` and before any stage:

- the output folders (``--out`` and its ``pretrain``, ``weights``, ``detection``, ``logs``) and the
  report folder are folders (or can be made), not files;
- the detection datasets are registered and their folders and split files exist, with the class
  count of the detection config (the annotations themselves are parsed by the detection stage);
- each (method, seed) is decided from what its run folders record: a finished run is reused only
  if its resolved config is the one asked for now (outside the stage's ``SAME_RUN`` keys),
  otherwise the command is refused naming the keys; a detection run records which pretraining run
  its backbone came from (``run_info.json``: ``backbone``), so a detection run of an earlier
  backbone is refused at once, not after the pretraining it would be compared with; a finished
  detection run whose pretraining folder or converted weights were deleted (to save disk) is
  reported done, from its own results.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from salfmix.errors import PipelineError
from salfmix.pipeline import stages
from salfmix.pipeline.plan import Plan

__all__ = ["backbone_key", "check_plans", "check_visible_gpus", "decide"]

DONE_FROM_DETECTION = "done (detection)"  # the detection run is finished: nothing upstream is needed


def _check_folder(path: str, what: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise PipelineError(f"{what} {path}: exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise PipelineError(f"{what} {path}: {parent} is a file, the folder cannot be made")


def _pretrain_text(plan: Plan) -> str:
    from pretrain.config import load_config

    return load_config(plan.pretrain_config, plan.pretrain_overrides()).dump()


def _detection_text(plan: Plan) -> str:
    """The detection config as the run will save it: resolved and rescaled to its process count."""
    from detection.config import load_config

    from detectron2.engine import DefaultTrainer

    cfg = load_config(plan.det_config, plan.det_overrides())
    return DefaultTrainer.auto_scale_workers(cfg, plan.num_gpus).dump()


def _refuse_drift(folder: str, text: str, same_run: Sequence[str], defaults: str, what: str, plan: Plan) -> None:
    from salfmix.runs.folder import finished_run_drift
    from salfmix.runs.manifest import describe_drift

    drift = finished_run_drift(folder, text, same_run, defaults)
    if drift:
        raise PipelineError(
            f"[{plan.name}] {what}: {folder} holds a finished run whose config differs from the one "
            f"asked for now in {describe_drift(drift)}; it is never reused for another recipe: move it "
            "away, or ask for the recipe it ran (nothing was run)"
        )


def refuse_live_run(folder: str, what: str) -> None:
    """One line naming the live process (pid, host, command) that holds ``folder``'s lock: a run of
    an earlier command still going (e.g. one whose orchestrator was killed)."""
    from salfmix.runs.lock import RunLock

    lock = RunLock(folder)
    if os.path.isdir(folder) and lock.is_held():
        raise PipelineError(f"{what}: {lock.refusal()}")


def backbone_key(plan: Plan) -> dict[str, Any] | None:
    """What identifies the pretraining run the plan's detection run is fine-tuned from: the
    finished pretraining run now in its folder (None when there is none)."""
    if stages.pretrain_state(plan.pretrain_dir, plan.label) != stages.FINISHED:
        return None
    return stages.source_key(plan.pretrain_dir)


def recorded_backbone(det_dir: str) -> dict[str, Any] | None:
    """The backbone a detection run recorded (``run_info.json``: ``backbone``); None if unknown."""
    from salfmix.runs.report import ReportError, read_json

    path = os.path.join(det_dir, "run_info.json")
    if not os.path.isfile(path):
        return None
    try:
        info = read_json(path)
    except ReportError:
        return None
    return info.get("backbone") if isinstance(info, dict) else None


def decide(plan: Plan, allow_live: bool = False) -> str:
    """The plan's starting point, decided from the manifests before anything runs:
    :data:`DONE_FROM_DETECTION` when its detection run is finished (whatever is left upstream),
    else "run" (the stages then skip what is finished). Raises :class:`PipelineError` (one line)
    for a run that can never be the one asked for."""
    from detection.run_folder import SAME_RUN as DET_SAME_RUN
    from detection.run_folder import defaults_text as det_defaults
    from pretrain.engine.runner import SAME_RUN as PRE_SAME_RUN
    from pretrain.engine.runner import defaults_text as pre_defaults

    if not allow_live:  # (allowed when only looking, or when SLURM jobs of ours hold them)
        refuse_live_run(plan.pretrain_dir, f"[{plan.name}] pretrain")
        refuse_live_run(plan.det_dir, f"[{plan.name}] detection")
    pre_state = stages.pretrain_state(plan.pretrain_dir, plan.label)
    det_state = stages.detection_state(plan.det_dir, plan.label)
    if pre_state == stages.FINISHED:
        _refuse_drift(plan.pretrain_dir, _pretrain_text(plan), PRE_SAME_RUN, pre_defaults(), "pretrain", plan)
    if det_state in (stages.FINISHED, stages.EVALUATE):
        _refuse_drift(plan.det_dir, _detection_text(plan), DET_SAME_RUN, det_defaults(), "detection", plan)
    if det_state == stages.FRESH:
        return "run"
    recorded, current = recorded_backbone(plan.det_dir), backbone_key(plan)
    if recorded is not None and current is not None and recorded != current:
        raise PipelineError(
            f"[{plan.name}] {plan.det_dir} holds a detection run fine-tuned from another pretraining "
            f"run than the one now in {plan.pretrain_dir}: move {plan.det_dir} away to fine-tune this "
            "one (nothing was run)"
        )
    if det_state == stages.FINISHED:
        return DONE_FROM_DETECTION
    if current is None and recorded is not None:
        # the pretraining will run (again): a new backbone for a detection run that began with another
        raise PipelineError(
            f"[{plan.name}] {plan.det_dir} holds an unfinished detection run whose pretraining run is "
            f"no longer in {plan.pretrain_dir} (a new pretraining would give it another backbone): "
            f"move {plan.det_dir} away (nothing was run)"
        )
    return "run"


def check_plans(plans: Sequence[Plan], report_out: str | None = None, allow_live: bool = False) -> list[str]:
    """The checks of the module docstring for every plan, before any stage; returns each plan's
    starting point (:func:`decide`). Raises :class:`PipelineError` with one line."""
    from detection.config import load_config
    from detection.data import prepare_datasets
    from salfmix.errors import DetectionSetupError

    for plan in plans[:1]:
        for path, what in (
            (plan.out, "--out"),
            (os.path.dirname(plan.pretrain_dir), "--out"),
            (os.path.dirname(plan.weights), "--out"),
            (os.path.dirname(plan.det_dir), "--out"),
            (os.path.dirname(plan.log("x")), "--out"),
        ):
            _check_folder(path, what)
        if report_out is not None:
            _check_folder(report_out, "--report-out")
        try:
            prepare_datasets(load_config(plan.det_config, plan.det_overrides()), validate=False)
        except DetectionSetupError as err:
            raise PipelineError(f"--det-config {plan.det_config}: {err}") from None
    return [decide(plan, allow_live) for plan in plans]


def check_visible_gpus(asked: int, option: str = "--num-gpus", cpu_ok: bool = False) -> None:
    """One line when fewer CUDA devices are visible than ``asked`` (instead of an "invalid device
    ordinal" inside every rank). Without CUDA, ``cpu_ok`` lets a count mean CPU processes."""
    if asked < 1:
        return
    import torch

    if not torch.cuda.is_available():
        if cpu_ok:
            return
        raise PipelineError(
            f"{option} {asked}: no CUDA device is visible on {os.uname().nodename} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    count = torch.cuda.device_count()
    if count < asked:
        raise PipelineError(
            f"{option} {asked}: only {count} CUDA device{'s' if count != 1 else ''} visible on "
            f"{os.uname().nodename} (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
