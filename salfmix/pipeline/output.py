"""Where a stage's output goes, and child processes that stop cleanly with the pipeline.

:func:`stage_output` sends everything the process writes on its stdout / stderr file
descriptors (Python's prints, logging handlers, C libraries, child processes) to a log file,
and also to the terminal unless ``quiet``. It works on the descriptors, not on ``sys.stdout``,
because Detectron2 and torchrun write through handlers and processes of their own.

:class:`ChildSignals` runs commands (torchrun, Detectron2's launch, a run of a study) in process
groups of their own and forwards each SIGINT / SIGTERM the pipeline receives to them, once: a
child stops at its own safe point (``salfmix.runs.signals``) and the pipeline exits with its status.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence

from salfmix.runs.signals import StopSignals, die_with_parent

__all__ = ["ChildSignals", "stage_output", "tail"]


def _pump(read_fd: int, targets: list[int]) -> None:
    """Copy everything from ``read_fd`` to every fd of ``targets`` until end of file."""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        for fd in targets:
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except InterruptedError:
                    continue
                except OSError:  # a closed terminal must not stop the log
                    break
    os.close(read_fd)


@contextlib.contextmanager
def stage_output(log_path: str, quiet: bool = False) -> Iterator[None]:
    """Append fds 1 and 2 of this process (and its children) to ``log_path`` inside the block;
    without ``quiet`` the terminal still shows them (like ``2>&1 | tee -a``)."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = [os.dup(1), os.dup(2)]
    pump: threading.Thread | None = None
    try:
        if quiet:
            target = log_fd
        else:
            read_fd, target = os.pipe()
            pump = threading.Thread(target=_pump, args=(read_fd, [log_fd, saved[0]]), daemon=True)
            pump.start()
        os.dup2(target, 1)
        os.dup2(target, 2)
        if not quiet:
            os.close(target)  # fds 1 and 2 hold the pipe now: restoring them ends the pump
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        if pump is not None:
            pump.join(timeout=30)  # a child that outlived the block may still hold the pipe
        for fd in saved + [log_fd]:
            os.close(fd)


def tail(path: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ("" if unreadable)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ChildSignals(StopSignals):
    """While active (``with ChildSignals() as signals:``, main thread only), SIGINT / SIGTERM are
    recorded (:attr:`signum`, the first one) and forwarded to the process group of every child
    that :meth:`run` started, once per signal received: the children stop at their own safe
    point (``salfmix.runs.signals``: a third signal ends them at once). Children get a process group of
    their own, so a terminal's Ctrl-C reaches them only through here, exactly once. Installing and
    restoring the handlers is :class:`salfmix.runs.signals.StopSignals`'; only the handler differs (this
    process never ends itself: it waits for its children)."""

    def __init__(self) -> None:
        super().__init__()
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        with self._lock:
            pids = list(self._children)
        for pid in pids:
            try:
                os.killpg(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def run(self, cmd: Sequence[str], env: dict[str, str] | None = None, log_path: str | None = None) -> int:
        """Run ``cmd`` (output appended to ``log_path``, else inherited) and return its exit
        status, 128 + N when signal N ended it. Safe to call from several threads."""
        log = open(log_path, "ab") if log_path else None
        try:
            # The child dies with this process (a SIGTERM at its death: it stops at its safe
            # point), so a killed orchestrator never leaves runs training on, orphaned.
            proc = subprocess.Popen(
                list(cmd),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            with self._lock:
                self._children[proc.pid] = proc
            try:
                rc = proc.wait()
            finally:
                with self._lock:
                    self._children.pop(proc.pid, None)
        finally:
            if log is not None:
                log.close()
        return 128 - rc if rc < 0 else rc
