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
from collections.abc import Callable, Sequence

from salfmix.errors import PipelineError
from salfmix.pipeline import stages
from salfmix.pipeline.output import stage_output, tail
from salfmix.pipeline.plan import Plan
from salfmix.runs.signals import Interrupted

__all__ = ["report_of", "run_methods", "run_pipeline", "run_stage"]


def _stage(plan: Plan, stage: str, log_name: str, quiet: bool, work: Callable[[], str | None]) -> None:
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


def _say(plan: Plan, text: str) -> None:
    print(f"[{plan.name}] {text}", flush=True)


def _pretrain_stage(plan: Plan, ctx: stages.Context, quiet: bool) -> None:
    state = stages.pretrain_state(plan.pretrain_dir, plan.label)
    if state == stages.FINISHED:
        _say(plan, f"pretrain: done ({os.path.join(plan.pretrain_dir, 'model_final.pth')})")
        return
    resuming = f" (resuming {plan.pretrain_dir})" if state == stages.RESUME else ""
    _say(plan, f"pretrain: {plan.pretrain_config}{resuming}")
    _stage(
        plan,
        "pretrain",
        "pretrain",
        quiet,
        lambda: stages.run_pretrain(
            plan.pretrain_config, plan.pretrain_overrides(), state == stages.RESUME, ctx, plan.num_gpus
        ),
    )
    # Only rank 0's machine writes the run folder and checks it: another machine's copy of a shared
    # file system may show rank 0's last writes late (and Detectron2's launch, unlike torchrun,
    # does not wait for the other machines before it returns).
    if ctx.main_node and stages.pretrain_state(plan.pretrain_dir, plan.label) != stages.FINISHED:
        raise PipelineError(
            f"[{plan.name}] pretrain: {plan.pretrain_dir} is not finished after the run (see {plan.log('pretrain')})"
        )


def _convert_stage(plan: Plan, quiet: bool) -> None:
    if stages.conversion_done(plan.pretrain_dir, plan.weights):
        _say(plan, f"convert: done ({plan.weights})")
        return
    if stages.pretrain_state(plan.pretrain_dir, plan.label) != stages.FINISHED:
        raise PipelineError(f"[{plan.name}] convert: {plan.pretrain_dir} holds no finished pretraining run")
    if stages.detection_state(plan.det_dir, plan.label) != stages.FRESH:
        # new weights under the old name: the detection run would be credited to a backbone it never saw
        raise PipelineError(
            f"[{plan.name}] {plan.det_dir} holds a detection run fine-tuned from an earlier "
            f"{plan.weights}, not from the pretraining run now in {plan.pretrain_dir}: move "
            f"{plan.det_dir} away to fine-tune this one"
        )
    _say(plan, f"convert: {plan.weights}")
    _stage(plan, "convert", "convert", quiet, lambda: stages.convert(plan.pretrain_dir, plan.weights))


def _detection_stage(plan: Plan, ctx: stages.Context, quiet: bool) -> None:
    from salfmix.pipeline.checks import backbone_key, recorded_backbone

    state = stages.detection_state(plan.det_dir, plan.label)
    results = os.path.join(plan.det_dir, "eval_results.json")
    if state == stages.FINISHED:
        _say(plan, f"fine-tune + evaluate: done ({results})")
        return
    if not stages.conversion_done(plan.pretrain_dir, plan.weights):
        raise PipelineError(
            f"[{plan.name}] fine-tune: {plan.weights} is not the conversion of the finished "
            f"pretraining run in {plan.pretrain_dir}"
        )
    if state == stages.EVALUATE:
        _say(plan, f"evaluate: {os.path.join(plan.det_dir, 'model_final.pth')}")
        _stage(
            plan, "evaluate", "detection", quiet, lambda: stages.evaluate_detection(plan.det_dir, ctx, plan.num_gpus)
        )
    else:
        resuming = f" (resuming {plan.det_dir})" if state == stages.RESUME else ""
        if ctx.main_node and (state == stages.FRESH or recorded_backbone(plan.det_dir) is None):
            # which pretraining run this detection run's backbone comes from, before it starts
            stages.record_backbone(plan.det_dir, backbone_key(plan))
        _say(plan, f"fine-tune + evaluate: {plan.det_config}{resuming}")
        _stage(
            plan,
            "fine-tune + evaluate",
            "detection",
            quiet,
            lambda: stages.train_detection(
                plan.det_config, plan.det_overrides(), state == stages.RESUME, ctx, plan.num_gpus
            ),
        )
    if ctx.main_node and stages.detection_state(plan.det_dir, plan.label) != stages.FINISHED:  # as for pretrain
        raise PipelineError(
            f"[{plan.name}] {plan.det_dir}: no final evaluation results after fine-tuning (see {plan.log('detection')})"
        )
    _say(plan, f"results: {results}")


def run_stage(plan: Plan, stage: str, ctx: stages.Context, quiet: bool = False) -> None:
    """One stage of ``plan`` ("pretrain", "convert", "detection": fine-tuning and evaluation),
    skipped when its folder says it is finished; the unit of a SLURM job
    (:mod:`salfmix.pipeline.slurm`). Raises :class:`PipelineError` (one line) or
    :class:`salfmix.runs.signals.Interrupted`."""
    for folder in (
        os.path.dirname(plan.pretrain_dir),
        os.path.dirname(plan.weights),
        os.path.dirname(plan.det_dir),
        os.path.dirname(plan.log("x")),
    ):
        os.makedirs(folder, exist_ok=True)
    if stage == "pretrain":
        _pretrain_stage(plan, ctx, quiet)
    elif stage == "convert":
        _convert_stage(plan, quiet)
    elif stage == "detection":
        _detection_stage(plan, ctx, quiet)
    else:
        raise ValueError(f"unknown stage {stage!r}")


def run_pipeline(plan: Plan, ctx: stages.Context, quiet: bool = False) -> str:
    """Every stage of ``plan`` that is not finished; returns the detection run folder, whose
    ``eval_results.json`` holds the final evaluation. Raises :class:`PipelineError` (one line)
    or :class:`salfmix.runs.signals.Interrupted`."""
    from salfmix.pipeline.checks import DONE_FROM_DETECTION

    upstream_done = stages.pretrain_state(plan.pretrain_dir, plan.label) == stages.FINISHED and stages.conversion_done(
        plan.pretrain_dir, plan.weights
    )
    if plan.start == DONE_FROM_DETECTION and not upstream_done:
        # the detection results are what the pipeline is for: a deleted backbone is not redone
        gone = [p for p in (plan.pretrain_dir, plan.weights) if not os.path.exists(p)] or [plan.weights]
        _say(
            plan,
            f"fine-tune + evaluate: done ({os.path.join(plan.det_dir, 'eval_results.json')}; "
            f"{' and '.join(gone)} not needed: the detection run recorded its backbone)",
        )
        return plan.det_dir
    for stage in ("pretrain", "convert", "detection"):
        run_stage(plan, stage, ctx, quiet)
    return plan.det_dir


def report_of(plans: Sequence[Plan], report_out: str, note: str | None = None, show: bool = True) -> str:
    """The detection report of the plans whose detection run is finished, in ``report_out``; the
    others are named (stage, state, log) and make it raise :class:`PipelineError` after the
    report of the rest is written. Returns the report's Markdown."""
    from detection.report import build_report, write_report
    from salfmix.errors import DetectionSetupError

    done = [p for p in plans if stages.detection_state(p.det_dir, p.label) == stages.FINISHED]
    missing = [p for p in plans if p not in done]
    text = ""
    if done:
        try:
            paths = write_report(build_report([p.det_dir for p in done], note=note), report_out)
        except DetectionSetupError as err:
            raise PipelineError(f"report: {err}") from None
        with open(paths["md"], encoding="utf-8") as f:
            text = f.read()
        if show:
            print(text, end="")
            print(f"wrote {', '.join(paths.values())}", flush=True)
    if missing:
        names = "; ".join(
            f"{p.name} (see {p.log('pretrain')}, {p.log('convert')}, {p.log('detection')})" for p in missing
        )
        raise PipelineError(
            f"report: {len(missing)} of {len(plans)} runs did not finish: {names}"
            + (" (the report holds the others)" if done else "")
        )
    return text


def run_methods(
    plans: Sequence[Plan], ctx: stages.Context, report_out: str, note: str | None = None, quiet: bool = False
) -> dict[str, str]:
    """Every plan in order, then the detection report of all of them in ``report_out``; returns
    the report's file paths."""
    for plan in plans:
        run_pipeline(plan, ctx, quiet)
    report_of(plans, report_out, note)
    return report_paths(report_out)


def report_paths(report_out: str) -> dict[str, str]:
    """The report's files in ``report_out`` (what :func:`detection.report.write_report` writes)."""
    return {ext: os.path.join(report_out, f"report.{ext}") for ext in ("md", "csv", "json", "png")}
