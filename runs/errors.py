"""The errors of a run folder: each is one line that names the folder or file and the cause.

The tools print the message alone (``error: ...``, no traceback) and exit non-zero.
"""
from __future__ import annotations


class RunError(Exception):
    """A run cannot start or go on; the message says why in one line."""


class WriteError(RunError):
    """A file could not be written (full disk, no permission, ...); the previous file is intact."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"cannot write {path}: {cause}")
        self.path, self.cause = path, cause


class RunLocked(RunError):
    """Another live process holds the run folder's lock."""


class RunRefused(RunError):
    """The request would overwrite or mislabel a run (a finished run, another run's files, config drift)."""
