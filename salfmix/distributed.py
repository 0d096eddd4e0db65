"""The end of a distributed job, as both stages' command lines do it (needs only torch)."""

from __future__ import annotations


def leave_process_group() -> None:
    """Destroy every process group this process joined; nothing without one.

    Call it on every rank once the job's collectives are over: after a finished run, and after a
    stop that every rank agreed on; not after an error, where another rank may still wait in a
    collective. A process that exits without it leaves gloo's worker threads to the interpreter's
    shutdown, and a rank can then abort at exit (SIGABRT, "terminate called without an active
    exception") after a run that finished: its launcher sees a failed job.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
