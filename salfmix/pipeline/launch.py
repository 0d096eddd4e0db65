"""``--status`` and ``--launcher slurm`` of the pipeline commands (the local launcher is
:mod:`salfmix.pipeline.runner`).

``launch_slurm``: the resources (cluster YAML, then the command line), the jobs still needed
(:func:`salfmix.pipeline.slurm.plan_jobs`), then ``--dry-run`` prints them, or the cluster is
checked, they are submitted and -- unless ``--no-wait`` -- followed until the report job ends,
whose report is printed as the local launcher prints it. Exit status: 0 when every run finished,
1 otherwise (the failed ones named, with their logs), 2 for bad input (nothing submitted).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from salfmix.errors import PipelineError
from salfmix.pipeline.plan import Plan

__all__ = ["launch_slurm", "launch_study_slurm", "print_status", "print_study_status", "submit_and_follow"]


def _slurm():
    try:
        from salfmix.pipeline import slurm
    except ImportError as err:
        raise PipelineError(
            f"--launcher slurm needs submitit, which cannot be imported ({err}); pip install submitit"
        ) from None
    return slurm


def print_status(plans: Sequence[Plan], out: str, report_out: str | None) -> None:
    """Every (method, seed) and stage: its run folder's state, its SLURM job and the job's state."""
    try:
        slurm = _slurm()
    except PipelineError:  # no submitit: the folders still say where the runs stand
        slurm = None
    if slurm is not None:
        rows = slurm.status_rows(plans, out, report_out or os.path.join(out, "report"))
    else:
        from salfmix.pipeline import stages

        rows = [(p.name, "pretrain", stages.pretrain_state(p.pretrain_dir, p.label), "-", "-") for p in plans]
    _print_rows(rows)


def _print_rows(rows: Sequence[tuple]) -> None:
    header = ("run", "stage", "state", "job", "slurm")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


def print_study_status(runs: Sequence, out: str) -> None:
    """Every run of a study: its run folder's state, its SLURM job and the job's state."""
    from salfmix.pipeline.stages import folder_status

    try:
        slurm = _slurm()
    except PipelineError:
        slurm = None
    recorded = slurm.recorded_jobs(out) if slurm is not None else {}
    states = slurm.slurm_states([v.get("job_id", "") for v in recorded.values()]) if slurm is not None else {}
    rows = []
    for run in runs:
        state = folder_status(run.run_dir)
        job = (recorded.get(f"{run.tag}/seed{run.seed}") or {}).get("job_id", "")
        rows.append((f"{run.tag}/seed{run.seed}", "pretrain", state, job or "-", states.get(job, "") or "-"))
    job = (recorded.get("report") or {}).get("job_id", "")
    written = os.path.isfile(os.path.join(out, "report", "report.md"))
    rows.append(("(all)", "report", "written" if written else "-", job or "-", states.get(job, "") or "-"))
    _print_rows(rows)


def launch_slurm(
    prog: str, plans: list[Plan], args: argparse.Namespace, report_out: str | None, note: str | None
) -> dict[str, str]:
    """Submit (or print, ``--dry-run``) the jobs of ``plans``; wait and print the report unless
    ``--no-wait``. Returns the report's paths (none without waiting); exits 1 when a run did not
    finish."""
    from salfmix.pipeline.cli import slurm_overrides
    from salfmix.pipeline.runner import report_paths

    slurm = _slurm()
    out = os.path.abspath(args.out)
    report_out = os.path.abspath(report_out or os.path.join(out, "report"))
    res = slurm.load_resources(args.cluster_config, slurm_overrides(args))
    if res.gpus_per_node and args.num_gpus not in (1, res.gpus_per_node):
        raise PipelineError(
            f"--num-gpus {args.num_gpus} and --gpus-per-node {res.gpus_per_node}: under SLURM a "
            "training job runs one process per GPU of each node; give only --gpus-per-node"
        )
    for plan in plans:  # processes per node: one per GPU, else --num-gpus CPU processes
        plan.num_gpus = res.gpus_per_node or plan.num_gpus
    recorded = slurm.recorded_jobs(out)
    states = slurm.slurm_states([v.get("job_id", "") for v in recorded.values()])
    jobs = slurm.plan_jobs(plans, report_out, note, res, recorded, states)
    if len(jobs) == 1 and jobs[0].job_id is None and not args.dry_run:  # all finished: no job needed
        from salfmix.pipeline.runner import report_of

        report_of(plans, report_out, note)
        return report_paths(report_out)
    return submit_and_follow(prog, slurm, jobs, res, out, report_out, args)


def launch_study_slurm(prog: str, runs: Sequence, recipe, args: argparse.Namespace, title: str) -> dict[str, str]:
    """``run_study --launcher slurm``: one job per unfinished run, then the report job."""
    from salfmix.pipeline.cli import slurm_overrides
    from salfmix.pipeline.study import study_report

    slurm = _slurm()
    out = os.path.abspath(args.output_root)
    report_out = os.path.join(out, "report")
    res = slurm.load_resources(args.cluster_config, slurm_overrides(args))
    recorded = slurm.recorded_jobs(out)
    states = slurm.slurm_states([v.get("job_id", "") for v in recorded.values()])
    jobs = slurm.plan_study_jobs(
        runs, recipe, os.path.abspath(args.data_root), report_out, title, res, recorded, states, args.keep_checkpoints
    )
    if len(jobs) == 1 and jobs[0].job_id is None and not args.dry_run:
        study_report(runs, report_out, title)
        return {"md": os.path.join(report_out, "report.md")}
    return submit_and_follow(prog, slurm, jobs, res, out, report_out, args)


def submit_and_follow(
    prog: str, slurm, jobs: Sequence, res, out: str, report_out: str, args: argparse.Namespace
) -> dict[str, str]:
    """``--dry-run``: print the jobs; else check the cluster, submit, and unless ``--no-wait``
    follow them and print the report (exit 1 when the report job did not complete)."""
    from salfmix.pipeline.runner import report_paths

    if args.dry_run:
        print(slurm.dry_run(jobs, res))
        return {}
    slurm.check_cluster(res)
    try:
        ids = slurm.submit_jobs(jobs, res, out)
    except PipelineError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    if args.no_wait:
        print("submitted; follow with the same command and --status (or run it again without --no-wait to wait)")
        return {}
    final = slurm.wait_for(ids)
    report = os.path.join(report_out, "report.md")
    failed = [key for key, job in ids.items() if key != "report" and final.get(job) not in ("COMPLETED", "")]
    if os.path.isfile(report):
        with open(report, encoding="utf-8") as f:
            print(f.read(), end="")
    if final.get(ids["report"]) == "COMPLETED":
        print(f"wrote the report in {report_out}")
        return report_paths(report_out)
    print(
        f"{prog}: error: report job {ids['report']} ended {final.get(ids['report'])}; jobs not completed: "
        f"{', '.join(failed) or 'none'} (job logs in {os.path.join(out, 'slurm')}/<job id>/, stage logs beside "
        "the runs)",
        file=sys.stderr,
    )
    raise SystemExit(1)
