"""One (method, seed) through the pipeline, or several and then the report.

For each :class:`~salfmix.pipeline.plan.Plan`: pretraining -> conversion -> fine-tuning (which ends with
the evaluation) -> the results, each stage skipped when its run folder's manifest says it is
finished (:mod:`salfmix.pipeline.stages`). A stage's output goes to ``OUT/logs/<name>.<stage>.log`` and,
unless ``quiet``, to the terminal; the pipeline itself prints one ``[<name>] <stage>: ...`` line
per stage. A failed stage stops the command with one line naming the stage and its log;
SIGINT / SIGTERM stop the running stage at its safe point and the command exits 130 / 143:
running the same command again continues.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, Dict, Optional, Sequence

from salfmix.pipeline import stages
from salfmix.pipeline.output import stage_output, tail
from salfmix.errors import PipelineError
from salfmix.pipeline.plan import Plan
from salfmix.runs.signals import Interrupted

__all__ = ["run_methods", "run_pipeline"]


def _stage(plan: Plan, stage: str, log_name: str, quiet: bool, work: Callable[[], Optional[str]]) -> None:
    """Run ``work`` with its output in the stage's log; failures become one-line PipelineErrors."""
    log = plan.log(log_name)
    try:
        with stage_output(log, quiet):
            try:
                line = work()
                if line:
                    print(line, flush=True)
            except stages.StageFailed as err:
                print(f"error: {err}", file=sys.stderr, flush=True)
                raise
            except (Interrupted, KeyboardInterrupt, PipelineError):
                raise
            except Exception:  # a bug, not bad input: the whole traceback goes to the log
                traceback.print_exc()
                raise
    except stages.StageFailed as err:
        raise PipelineError(_failure(plan, stage, str(err), log, quiet)) from None
    except (Interrupted, KeyboardInterrupt, PipelineError):
        raise
    except Exception as err:
        raise PipelineError(_failure(plan, stage, f"{type(err).__name__}: {err}", log, quiet)) from None


def _failure(plan: Plan, stage: str, message: str, log: str, quiet: bool) -> str:
    if quiet:  # the terminal saw nothing of the stage: show how it ended
        shown = tail(log)
        if shown:
            print(shown, file=sys.stderr)
    return f"[{plan.name}] {stage}: {' '.join(message.split())} (its log: {log})"


def run_pipeline(plan: Plan, ctx: stages.Context, quiet: bool = False) -> str:
    """Every stage of ``plan`` that is not finished; returns the detection run folder, whose
    ``eval_results.json`` holds the final evaluation. Raises :class:`PipelineError` (one line)
    or :class:`salfmix.runs.signals.Interrupted`."""
    def say(text: str) -> None:
        print(f"[{plan.name}] {text}", flush=True)

    from salfmix.pipeline.checks import DONE_FROM_DETECTION, backbone_key, recorded_backbone

    upstream_done = (stages.pretrain_state(plan.pretrain_dir, plan.label) == stages.FINISHED
                     and stages.conversion_done(plan.pretrain_dir, plan.weights))
    if plan.start == DONE_FROM_DETECTION and not upstream_done:
        # the detection results are what the pipeline is for: a deleted backbone is not redone
        gone = [p for p in (plan.pretrain_dir, plan.weights) if not os.path.exists(p)] or [plan.weights]
        say(f"fine-tune + evaluate: done ({os.path.join(plan.det_dir, 'eval_results.json')}; "
            f"{' and '.join(gone)} not needed: the detection run recorded its backbone)")
        return plan.det_dir

    for folder in (os.path.dirname(plan.pretrain_dir), os.path.dirname(plan.weights), os.path.dirname(plan.det_dir),
                   os.path.dirname(plan.log("x"))):
        os.makedirs(folder, exist_ok=True)

    state = stages.pretrain_state(plan.pretrain_dir, plan.label)
    if state == stages.FINISHED:
        say(f"pretrain: done ({os.path.join(plan.pretrain_dir, 'model_final.pth')})")
    else:
        resuming = f" (resuming {plan.pretrain_dir})" if state == stages.RESUME else ""
        say(f"pretrain: {plan.pretrain_config}{resuming}")
        _stage(plan, "pretrain", "pretrain", quiet, lambda: stages.run_pretrain(
            plan.pretrain_config, plan.pretrain_overrides(), state == stages.RESUME, ctx, plan.num_gpus))
        if stages.pretrain_state(plan.pretrain_dir, plan.label) != stages.FINISHED:
            raise PipelineError(f"[{plan.name}] pretrain: {plan.pretrain_dir} is not finished after the run "
                                f"(see {plan.log('pretrain')})")

    if stages.conversion_done(plan.pretrain_dir, plan.weights):
        say(f"convert: done ({plan.weights})")
    else:
        if stages.detection_state(plan.det_dir, plan.label) != stages.FRESH:
            # new weights under the old name: the detection run would be credited to a backbone it never saw
            raise PipelineError(f"[{plan.name}] {plan.det_dir} holds a detection run fine-tuned from an earlier "
                                f"{plan.weights}, not from the pretraining run now in {plan.pretrain_dir}: move "
                                f"{plan.det_dir} away to fine-tune this one")
        say(f"convert: {plan.weights}")
        _stage(plan, "convert", "convert", quiet, lambda: stages.convert(plan.pretrain_dir, plan.weights))

    state = stages.detection_state(plan.det_dir, plan.label)
    results = os.path.join(plan.det_dir, "eval_results.json")
    if state == stages.FINISHED:
        say(f"fine-tune + evaluate: done ({results})")
    elif state == stages.EVALUATE:
        say(f"evaluate: {os.path.join(plan.det_dir, 'model_final.pth')}")
        _stage(plan, "evaluate", "detection", quiet,
               lambda: stages.evaluate_detection(plan.det_dir, ctx, plan.num_gpus))
    else:
        resuming = f" (resuming {plan.det_dir})" if state == stages.RESUME else ""
        if state == stages.FRESH or recorded_backbone(plan.det_dir) is None:
            # which pretraining run this detection run's backbone comes from, before it starts
            stages.record_backbone(plan.det_dir, backbone_key(plan))
        say(f"fine-tune + evaluate: {plan.det_config}{resuming}")
        _stage(plan, "fine-tune + evaluate", "detection", quiet, lambda: stages.train_detection(
            plan.det_config, plan.det_overrides(), state == stages.RESUME, ctx, plan.num_gpus))
    if stages.detection_state(plan.det_dir, plan.label) != stages.FINISHED:
        raise PipelineError(f"[{plan.name}] {plan.det_dir}: no final evaluation results after fine-tuning "
                            f"(see {plan.log('detection')})")
    say(f"results: {results}")
    return plan.det_dir


def run_methods(plans: Sequence[Plan], ctx: stages.Context, report_out: str, note: Optional[str] = None,
                quiet: bool = False) -> Dict[str, str]:
    """Every plan in order, then the detection report of all of them in ``report_out``; returns
    the report's file paths."""
    from salfmix.errors import DetectionSetupError
    from detection.report import build_report, write_report

    folders = [run_pipeline(plan, ctx, quiet) for plan in plans]
    try:
        report = build_report(folders, note=note)
        paths = write_report(report, report_out)
    except DetectionSetupError as err:
        raise PipelineError(f"report: {err}") from None
    with open(paths["md"], encoding="utf-8") as f:
        print(f.read(), end="")
    print(f"wrote {', '.join(paths.values())}")
    return paths
