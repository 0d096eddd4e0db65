"""An exclusive lock on a run folder for the life of a run: ``fcntl.flock`` on ``<folder>/run.lock``.

The kernel releases a flock when its holder dies (even by SIGKILL), so a stale lock never blocks:
the lock file may stay behind, and only a live process can hold it. The holder writes its pid,
host, start time and command into the file, for the message another process gets. Linux only
(flock); on NFS, Linux emulates flock with POSIX byte-range locks, which the server honours.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from salfmix.errors import RunError, RunLocked
from salfmix.runs.files import describe_os_error

LOCK_FILE = "run.lock"


class RunLock:
    """``with RunLock(folder, command):`` holds the folder's lock, or raises :class:`RunLocked`."""

    def __init__(self, folder: str, command: Sequence[str] | None = None) -> None:
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self.command = list(command) if command is not None else None
        self.fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its last holder (empty if unreadable)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                info = json.load(f)
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        """Take the lock without waiting; raises :class:`RunLocked` naming the live holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise RunError(f"OUTPUT_DIR {self.folder}: cannot create {LOCK_FILE} ({describe_os_error(err)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self.refusal() from None
        self.fd = fd
        return self

    def refusal(self) -> RunLocked:
        """The error for a folder whose lock another process holds, naming that process."""
        info = self.holder()
        who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
        since = f" since {info['started']}" if info.get("started") else ""
        cmd = f" ({' '.join(info['command'])})" if info.get("command") else ""
        return RunLocked(
            f"OUTPUT_DIR {self.folder} is in use by {who}{since}{cmd}: wait for it to end, or choose another OUTPUT_DIR"
        )

    def is_held(self) -> bool:
        """Whether a live process (this one included, through another open) holds the lock; creates nothing."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock this probe took

    def record_holder(self) -> None:
        """Write this process's pid, host, time and command into the lock file (in place: the lock is on it)."""
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": self.command,
        }
        data = (json.dumps(info) + "\n").encode("utf-8")
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
        except OSError:  # only informative: a full disk must not stop a run from holding its lock
            pass

    def release(self) -> None:
        """Release the lock (the file stays: removing it would race with a process about to lock it)."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
