"""The pipeline's stages as SLURM jobs, submitted with submitit.

For each (method, seed) of a plan: a pretraining job; its conversion, a one-CPU job that starts
after the pretraining succeeded (``afterok``); its detection fine-tuning and evaluation, after the
conversion (``afterok``); then one report job after every detection job, whatever became of
them (``afterany``), which writes the side-by-side report of the finished runs and names the
unfinished ones. A job whose dependency failed is cancelled by SLURM (``--kill-on-invalid-dep``),
so the report job always runs.

Each job runs the same stage code as the local launcher (:func:`salfmix.pipeline.runner.run_stage`)
in the job's Python process, its run folder decides fresh / resume / finished. Signals:

- submitit asks SLURM for ``SIGUSR2`` ``signal_delay_s`` seconds before the time limit (and a
  preempting cluster sends it too): the run layer stops the stage at its next safe point with a
  checkpoint, then the job hands the signal to submitit, which requeues it
  (:class:`StageJob.checkpoint`); the next attempt resumes the run folder;
- ``scontrol requeue`` / preemption with requeue send ``SIGTERM``: the stage stops at its safe
  point the same way and the job exits 143; SLURM starts it again and it resumes.

Every attempt is recorded in the run's ``run.json`` (``attempts``: SLURM job id, restart count,
node, start, end, how it ended). What was submitted is recorded in ``OUT/slurm/jobs.json``: the
same command run again submits only the stages that are neither finished nor queued or running.
Multi-node: one task per node; the stage's tool starts on each node with torchrun (pretraining)
or Detectron2's launch (detection) given the node's rank and the first node as the rendezvous.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import submitit

from salfmix.errors import PipelineError
from salfmix.pipeline.plan import Plan
from salfmix.pipeline.slurm_resources import Resources, check_cluster, load_resources, run_command

__all__ = [
    "Resources",
    "StageJob",
    "StudyJob",
    "check_cluster",
    "dry_run",
    "load_resources",
    "plan_jobs",
    "plan_study_jobs",
    "recorded_jobs",
    "slurm_states",
    "status_rows",
    "submit_jobs",
    "wait_for",
]

STAGES = ("pretrain", "convert", "detection")
ACTIVE = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "RESIZING",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "SIGNALING",
    "STAGE_OUT",
}
# --- the jobs ---------------------------------------------------------------------------------


def _node_context() -> dict[str, Any]:
    """This task's place in a multi-node job, from SLURM's environment."""
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "1") or 1)
    if nodes <= 1:
        return {}
    hosts = run_command(["scontrol", "show", "hostnames", os.environ.get("SLURM_JOB_NODELIST", "")]).stdout.split()
    master = hosts[0] if hosts else socket.gethostname()
    port = 20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000  # the same on every node, rarely taken
    return {
        "nnodes": nodes,
        "node_rank": int(os.environ.get("SLURM_NODEID", "0")),
        "master_addr": master,
        "master_port": port,
    }


class _Job(submitit.helpers.Checkpointable):
    """A SLURM job's callable: :meth:`work` under the stop rules of the module docstring."""

    gpus_per_node: int = 0

    def work(self, ctx: Any) -> str:
        raise NotImplementedError

    def __call__(self) -> str:
        from salfmix.pipeline import stages
        from salfmix.pipeline.checks import check_visible_gpus
        from salfmix.runs.signals import Interrupted, exit_code

        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
        if cpus:  # the CPUs the job was given, not every core of the node (jobs share nodes)
            import torch

            torch.set_num_threads(cpus)
        try:
            check_visible_gpus(self.gpus_per_node, "--gpus-per-node")
            return self.work(stages.Context(command=[sys.executable, *sys.argv], again="", **_node_context()))
        except Interrupted as err:
            sys.stdout.flush()
            if err.signum == signal.SIGUSR2:  # the time-limit warning: submitit requeues (checkpoint())
                signal.raise_signal(signal.SIGUSR2)
                time.sleep(30)  # submitit's handler exits; this is never reached
            raise SystemExit(exit_code(err.signum)) from None  # SLURM requeues or ends it
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None


@dataclass
class StageJob(_Job):
    """One stage of one pipeline plan, or the report of all (``stage`` "report", ``plans``)."""

    stage: str
    plan: Plan | None = None
    plans: Sequence[Plan] = ()
    report_out: str = ""
    note: str | None = None
    gpus_per_node: int = 0

    def work(self, ctx: Any) -> str:
        from salfmix.pipeline import runner

        if self.stage == "report":  # writes the report of what finished, names the rest
            return runner.report_of(self.plans, self.report_out, self.note)
        assert self.plan is not None
        runner.run_stage(self.plan, self.stage, ctx)
        return f"{self.plan.name} {self.stage}: done"


@dataclass
class StudyJob(_Job):
    """One run of a classification study (:mod:`salfmix.pipeline.study`), or its report
    (``run`` None: the cls report of the finished ``runs`` in ``report_out``)."""

    recipe: Any
    data_root: str
    run: Any = None
    runs: Sequence[Any] = ()
    report_out: str = ""
    title: str = ""
    threads: int = 1
    keep_checkpoints: bool = False
    gpus_per_node: int = 0

    def work(self, ctx: Any) -> str:
        from salfmix.pipeline.study import execute_study, study_report

        if self.run is None:
            return study_report(self.runs, self.report_out, self.title)
        summary = execute_study([self.run], self.recipe, self.data_root, 1, self.threads, self.keep_checkpoints, ctx)
        if summary["failed"]:
            raise PipelineError(f"{self.run.run_dir}: {summary['failed'][self.run.run_dir]}")
        return f"{self.run.run_dir}: done"


def stage_done(plan: Plan, stage: str) -> bool:
    """Whether ``stage`` of ``plan`` is finished, from its run folder's manifest."""
    from salfmix.pipeline import stages
    from salfmix.pipeline.checks import DONE_FROM_DETECTION

    if plan.start == DONE_FROM_DETECTION:
        return True
    if stage == "pretrain":
        return stages.pretrain_state(plan.pretrain_dir, plan.label) == stages.FINISHED
    if stage == "convert":
        return stage_done(plan, "pretrain") and stages.conversion_done(plan.pretrain_dir, plan.weights)
    return stages.detection_state(plan.det_dir, plan.label) == stages.FINISHED


@dataclass
class JobPlan:
    """A job to submit (or one already queued, ``job_id`` set): its key, callable and dependencies."""

    key: str
    job: _Job
    light: bool
    after: list[str]
    job_id: str | None = None


def jobs_file(out: str) -> str:
    """Where the submitted jobs are recorded."""
    return os.path.join(out, "slurm", "jobs.json")


def recorded_jobs(out: str) -> dict[str, Any]:
    """``OUT/slurm/jobs.json``: key -> {job_id, submitted}."""
    from salfmix.runs.report import ReportError, read_json

    try:
        return read_json(jobs_file(out)) if os.path.isfile(jobs_file(out)) else {}
    except ReportError as err:
        raise PipelineError(str(err)) from None


def slurm_states(job_ids: Sequence[str]) -> dict[str, str]:
    """Each job's SLURM state: squeue for live jobs, sacct for ended ones ("" when unknown)."""
    ids = [j for j in dict.fromkeys(job_ids) if j]
    if not ids:
        return {}
    states = {j: "" for j in ids}
    live = run_command(["squeue", "-h", "-o", "%i %T", "-j", ",".join(ids)])
    for line in live.stdout.splitlines():
        job, _, state = line.strip().partition(" ")
        states[job] = state
    ended = [j for j in ids if not states[j]]
    if ended:
        done = run_command(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ended)])
        for line in done.stdout.splitlines():
            job, _, state = line.strip().partition("|")
            if job in states and not states[job]:
                states[job] = state.split()[0] if state else ""
    return states


def plan_jobs(
    plans: Sequence[Plan],
    report_out: str,
    note: str | None,
    res: Resources,
    recorded: dict[str, Any],
    states: dict[str, str],
) -> list[JobPlan]:
    """The jobs of a command: every stage not finished, reusing the recorded jobs still queued or
    running (no duplicates), each depending on the job of its previous stage; the report last."""
    jobs: list[JobPlan] = []
    detections: list[str] = []
    for plan in plans:
        previous: str | None = None
        for stage in STAGES:
            key = f"{plan.name}/{stage}"
            if stage_done(plan, stage):
                continue
            job_id = queued_job(recorded, key, states)
            job = StageJob(stage, plan=plan, gpus_per_node=0 if stage == "convert" else res.gpus_per_node)
            jobs.append(JobPlan(key, job, stage == "convert", [previous] if previous else [], job_id))
            previous = key
        if previous:
            detections.append(previous)
    return _with_report(
        jobs, StageJob("report", plans=list(plans), report_out=report_out, note=note), detections, recorded, states
    )


def queued_job(recorded: dict[str, Any], key: str, states: dict[str, str]) -> str | None:
    """The recorded job of ``key`` if SLURM still has it queued or running (else None: submit anew)."""
    job_id = (recorded.get(key) or {}).get("job_id")
    return job_id if job_id and states.get(job_id) in ACTIVE else None


def _with_report(
    jobs: list[JobPlan], report: _Job, after: list[str], recorded: dict[str, Any], states: dict[str, str]
) -> list[JobPlan]:
    unchanged = all(item.job_id for item in jobs)  # nothing new to wait for: a queued report job will do
    job_id = queued_job(recorded, "report", states) if unchanged else None
    return [*jobs, JobPlan("report", report, True, after, job_id)]


def plan_study_jobs(
    runs: Sequence[Any],
    recipe: Any,
    data_root: str,
    report_out: str,
    title: str,
    res: Resources,
    recorded: dict[str, Any],
    states: dict[str, str],
    keep_checkpoints: bool = False,
) -> list[JobPlan]:
    """A study's jobs: one per unfinished run (reusing those queued or running), then its report."""
    jobs = []
    for run in runs:
        if run.done:
            continue
        key = f"{run.tag}/seed{run.seed}"
        job_id = queued_job(recorded, key, states)
        job = StudyJob(
            recipe,
            data_root,
            run=run,
            threads=res.cpus_per_task,
            keep_checkpoints=keep_checkpoints,
            gpus_per_node=res.gpus_per_node,
        )
        jobs.append(JobPlan(key, job, False, [], job_id))
    report = StudyJob(recipe, data_root, runs=list(runs), report_out=report_out, title=title)
    return _with_report(jobs, report, [item.key for item in jobs], recorded, states)


def dry_run(jobs: Sequence[JobPlan], res: Resources) -> str:
    """Every job, its resources and its dependencies, without submitting."""
    lines = []
    for item in jobs:
        kind = "afterany" if item.key == "report" else "afterok"
        after = f"{kind}: {', '.join(item.after)}" if item.after else "no dependency"
        queued = f" (queued: job {item.job_id})" if item.job_id else ""
        lines.append(f"{item.key:<36} {res.describe(item.light):<48} {after}{queued}")
    return "\n".join(lines)


def submit_jobs(jobs: Sequence[JobPlan], res: Resources, out: str) -> dict[str, str]:
    """Submit what is not queued yet, in order; record every job id in ``OUT/slurm/jobs.json``
    after each submission (a failure midway leaves what was submitted recorded). Returns key -> id."""
    from salfmix.runs.files import atomic_write_json
    from salfmix.runs.manifest import now

    folder = os.path.join(out, "slurm")
    os.makedirs(folder, exist_ok=True)
    record = recorded_jobs(out)
    ids: dict[str, str] = {item.key: item.job_id for item in jobs if item.job_id}
    for item in jobs:
        if item.job_id:
            continue
        # max_num_timeout: the time limits after which submitit gives up requeueing (its default: 3)
        executor = submitit.AutoExecutor(
            folder=os.path.join(folder, "%j"), cluster="slurm", slurm_max_num_timeout=res.max_requeues
        )
        params = res.sbatch(item.light)
        extra = {"kill-on-invalid-dep": "yes"}
        after = [ids[key] for key in item.after if key in ids]
        if after:
            extra["dependency"] = ("afterany:" if item.key == "report" else "afterok:") + ":".join(after)
        executor.update_parameters(
            name=f"salfmix.{item.key.replace('/', '.')}", slurm_additional_parameters=extra, **params
        )
        try:
            job = executor.submit(item.job)
        except Exception as err:  # submitit raises plain errors for sbatch's refusals
            raise PipelineError(f"submitting {item.key}: {' '.join(str(err).split())[-300:]}") from None
        ids[item.key] = str(job.job_id)
        record[item.key] = {"job_id": str(job.job_id), "submitted": now(), "resources": res.describe(item.light)}
        atomic_write_json(jobs_file(out), record)
        print(
            f"submitted {item.key}: job {job.job_id}" + (f" (after {', '.join(item.after)})" if item.after else ""),
            flush=True,
        )
    return ids


def wait_for(ids: dict[str, str], poll_s: float = 5.0) -> dict[str, str]:
    """Follow the jobs until the report job has ended, printing each change of state; returns
    the last states."""
    seen: dict[str, str] = {}
    by_id = {job_id: key for key, job_id in ids.items()}
    while True:
        states = slurm_states(list(ids.values()))
        for job_id, state in states.items():
            if state and seen.get(job_id) != state:
                print(f"[{by_id[job_id]}] job {job_id}: {state}", flush=True)
                seen[job_id] = state
        report_state = states.get(ids["report"], "")
        if report_state and report_state not in ACTIVE:
            return states
        time.sleep(poll_s)


def status_rows(plans: Sequence[Plan], out: str, report_out: str) -> list[tuple[str, str, str, str, str]]:
    """(name, stage, state of its run folder, job id, SLURM state) for every stage of every plan."""
    from salfmix.pipeline.stages import folder_status

    recorded = recorded_jobs(out)
    states = slurm_states([v.get("job_id", "") for v in recorded.values()])
    rows = []
    for plan in plans:
        for stage in STAGES:
            if stage == "convert":
                state = (
                    "finished"
                    if stage_done(plan, stage)
                    else ("missing" if not os.path.exists(plan.weights) else "stale")
                )
            else:
                state = folder_status(plan.pretrain_dir if stage == "pretrain" else plan.det_dir)
            job = (recorded.get(f"{plan.name}/{stage}") or {}).get("job_id", "")
            rows.append((plan.name, stage, state, job or "-", states.get(job, "") or "-"))
    job = (recorded.get("report") or {}).get("job_id", "")
    rows.append(
        (
            "(all)",
            "report",
            "written" if os.path.isfile(os.path.join(report_out, "report.md")) else "-",
            job or "-",
            states.get(job, "") or "-",
        )
    )
    return rows
