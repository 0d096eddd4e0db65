"""A real one-node SLURM cluster (salfmix.slurm_cluster) runs, chains, requeues and signals jobs.

The session's ``slurm_cluster`` fixture (tests/conftest.py) starts the cluster once (about 10 s;
packages are installed first if missing) and stops it at the end; where SLURM cannot start it
skips with the reason.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from salfmix.slurm_cluster import LocalSlurm, node_state

pytestmark = pytest.mark.slow

WAIT_S = 300.0  # two busy cores, maybe other jobs queued first: be patient


@pytest.fixture(scope="module")
def slurm(slurm_cluster: LocalSlurm) -> LocalSlurm:
    return slurm_cluster


def _wait(what: str, ready: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def _out(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def _sbatch(*args: str) -> str:
    return _out("sbatch", "--parsable", *args).strip().split(";")[0]


def _states(job: str, duplicates: bool = False) -> list[str]:
    """The job's states in accounting (its allocation, not its steps), oldest attempt first."""
    cmd = ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job] + (["-D"] if duplicates else [])
    return [line.split()[0] for line in _out(*cmd).splitlines() if line.strip()]


def _finished(job: str) -> bool:
    return not _out("squeue", "-h", "-j", job).strip() and bool(_states(job))


def test_cluster_is_idle_and_reused(slurm: LocalSlurm, tmp_path: Path) -> None:
    assert node_state() in ("idle", "mixed", "allocated")
    again = LocalSlurm().start(tmp_path)
    assert again.reused and not again.started
    again.stop()  # a reused cluster is left running
    assert node_state() is not None


def test_sbatch_wrap_completes(slurm: LocalSlurm, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    job = _sbatch("-o", str(out), "--wrap", "echo hello from $SLURM_JOB_ID")
    _wait(f"job {job} in accounting", lambda: _finished(job) and _states(job) == ["COMPLETED"])
    assert out.read_text().strip() == f"hello from {job}"


def _result(job):  # submitit's Job.result() has no timeout
    _wait(f"submitit job {job.job_id}", job.done)
    return job.result()


def _submitit_executor(folder: Path):
    submitit = pytest.importorskip("submitit")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(slurm_partition="debug", timeout_min=5, cpus_per_task=1)
    return executor


def test_submitit_returns_result(slurm: LocalSlurm, tmp_path: Path) -> None:
    def square_plus(x: int, y: int) -> tuple:
        import os

        return x * x + y, os.environ["SLURM_JOB_ID"]

    job = _submitit_executor(tmp_path).submit(square_plus, 7, y=1)
    assert _result(job) == (50, job.job_id)
    _wait("accounting", lambda: _states(job.job_id) == ["COMPLETED"])


def test_afterok_dependency_runs_after_parent(slurm: LocalSlurm, tmp_path: Path) -> None:
    def parent() -> float:
        import time

        time.sleep(3)
        return time.time()

    def child() -> float:
        import time

        return time.time()

    executor = _submitit_executor(tmp_path)
    first = executor.submit(parent)
    executor.update_parameters(slurm_additional_parameters={"dependency": f"afterok:{first.job_id}"})
    second = executor.submit(child)
    dependency = _out("squeue", "-h", "-j", second.job_id, "-o", "%E").strip()  # while it waits
    assert dependency.startswith(f"afterok:{first.job_id}") or first.done(), dependency
    parent_end, child_start = _result(first), _result(second)
    assert child_start >= parent_end
    _wait("accounting", lambda: _states(first.job_id) == _states(second.job_id) == ["COMPLETED"])


def test_requeued_job_runs_again(slurm: LocalSlurm, tmp_path: Path) -> None:
    trace = tmp_path / "attempts.txt"
    script = tmp_path / "job.sh"
    script.write_text(f"""#!/bin/bash
echo "attempt restart=${{SLURM_RESTART_COUNT:-0}}" >> {trace}
[ "${{SLURM_RESTART_COUNT:-0}}" = 0 ] && sleep 300
echo done >> {trace}
""")
    job = _sbatch("-o", str(tmp_path / "out-%j.txt"), str(script))
    _wait("the first attempt", lambda: trace.exists() and "restart=0" in trace.read_text())
    assert _out("squeue", "-h", "-j", job, "-o", "%T").strip() == "RUNNING"
    started = time.monotonic()
    _out("scontrol", "requeue", job)
    _wait("the second attempt to finish", lambda: "done" in trace.read_text())
    print(f"requeued job ran again and finished after {time.monotonic() - started:.1f} s")
    assert trace.read_text().split("\n") == ["attempt restart=0", "attempt restart=1", "done", ""]
    assert "Restarts=1" in _out("scontrol", "show", "job", job)
    _wait("accounting", lambda: _states(job, duplicates=True) == ["REQUEUED", "COMPLETED"])


def test_signal_before_time_limit(slurm: LocalSlurm, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = tmp_path / "job.sh"
    script.write_text("""#!/bin/bash
trap 'echo "USR1 after $SECONDS s"; exit 0' USR1
sleep 300 & wait
echo "no signal"
""")
    # SLURM checks time limits every ~30 s, so the signal may come up to 60 s early.
    job = _sbatch("--time=1", "--signal=B:USR1@20", "-o", str(out), str(script))
    _wait(f"job {job} to end", lambda: _finished(job))
    text = out.read_text()
    assert text.startswith("USR1 after "), text
    assert int(text.split()[2]) < 60
    _wait("accounting", lambda: _states(job) == ["COMPLETED"])


def test_leftovers_are_the_cluster_jobs_live_processes_not_zombies() -> None:
    """What stop() kills and the session checks is gone: a live process of the cluster's jobs is
    a leftover, the same process once exited (a zombie its parent has not reaped yet) is not."""
    import sys

    cluster = LocalSlurm()
    # A process named slurmstepd (as a job step's is): a zombie keeps its name, not its environment.
    child = (
        "import ctypes, sys; ctypes.CDLL(None).prctl(15, b'slurmstepd', 0, 0, 0); print(flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()  # renamed
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "slurmstepd"
        assert proc.pid in cluster.leftover_processes()
        proc.stdin.close()  # it exits; not reaped (no wait) it stays a zombie
        _wait("the child to exit", lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(")")[-1].split()[0] == "Z")
        assert proc.pid not in cluster.leftover_processes()
    finally:
        proc.wait()
