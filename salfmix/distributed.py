"""The end of a distributed job, as both stages' command lines do it (torch and salfmix.runs only)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from salfmix.runs.signals import Interrupted


def leave_process_group() -> None:
    """Destroy every process group this process joined; nothing without one.

    A process that exits without it leaves gloo's worker threads to the interpreter's shutdown,
    and a rank can then abort at exit (SIGABRT, "terminate called without an active exception")
    after a run that finished: its launcher sees a failed job.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def leaving_process_group() -> Iterator[None]:
    """Leave the process group when the block ends normally or by a stop every rank agreed on
    (:class:`~salfmix.runs.signals.Interrupted`); not after an error, where another rank may
    still wait in a collective."""
    try:
        yield
    except Interrupted:
        leave_process_group()
        raise
    leave_process_group()
