"""SIGINT / SIGTERM: stop at a safe point instead of dying mid-write.

Inside ``with StopSignals() as stop:`` the first SIGINT or SIGTERM only sets ``stop.signum``; the
training loops read it at their safe points (pretraining: after each step in one process, at the
monitor's reading under DDP, where the ranks agree on it; Detectron2: after each iteration) and
raise :class:`Interrupted`, which the command turns into one line naming the resume command and
exit status 128 + signal (130 for SIGINT, 143 for SIGTERM). A second signal changes nothing (torchrun
forwards a Ctrl-C as a SIGTERM after the terminal's SIGINT); a third one ends the process at once,
without a traceback (the atomic writes leave only temp files, removed at the next start).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

__all__ = ["Interrupted", "StopSignals", "die_with_parent", "exit_code", "signal_name"]

# SIGUSR2: what submitit asks SLURM to send before a time limit or a preemption.
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ..."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """The shell's status of a process ended by ``signum``: 128 + signum."""
    return 128 + int(signum)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux
    ``PR_SET_PDEATHSIG``); a no-op elsewhere. Meant as a child's ``preexec_fn``: a run started by
    an orchestrator that is killed (SIGKILL, the out-of-memory killer) then stops at its own safe
    point instead of training on, orphaned, holding its run folder and its GPUs."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signum), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


class Interrupted(BaseException):
    """A stop requested by a signal, raised at a safe point (a BaseException, like KeyboardInterrupt,
    so that ``except Exception`` blocks, e.g. Detectron2's training loop, do not log it as a crash)."""

    def __init__(self, signum: int, where: str = "") -> None:
        super().__init__(f"stopped by {signal_name(signum)}{' ' + where if where else ''}")
        self.signum, self.where = int(signum), where

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return exit_code(self.signum)


class StopSignals:
    """Installs the handlers while active (main thread only; elsewhere it never reports a stop)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        if self.count >= 3:  # the user insists: end now, as the signal's default action would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def requested(self) -> bool:
        """Whether a stop was requested (a cheap attribute read: poll it every step)."""
        return self.signum is not None

    def check(self, where: str = "") -> None:
        """Raise :class:`Interrupted` if a stop was requested."""
        if self.signum is not None:
            raise Interrupted(self.signum, where)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
