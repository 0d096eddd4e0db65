"""Every error a user can fix, under one base: each is one line that names the file, folder, key
or option and what was expected. The commands print the message alone (``error: ...``, no
traceback) and exit non-zero; a library caller catches :class:`SalfmixError` (or the subclass).
"""

from __future__ import annotations

__all__ = [
    "DetectionSetupError",
    "PipelineError",
    "ReportError",
    "RunError",
    "RunLocked",
    "RunRefused",
    "SalfmixError",
    "WriteError",
]


class SalfmixError(Exception):
    """The base: bad input or a refused action, described in one line."""


class RunError(SalfmixError):
    """A run cannot start or go on (its folder, lock or manifest); the message says why."""


class WriteError(RunError):
    """A file could not be written (full disk, no permission, ...); the previous file is intact."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"cannot write {path}: {cause}")
        self.path, self.cause = path, cause


class RunLocked(RunError):
    """Another live process holds the run folder's lock."""


class RunRefused(RunError):
    """The request would overwrite or mislabel a run (a finished run, another run's files, config drift)."""


class DetectionSetupError(SalfmixError, ValueError):
    """The detection stage's bad input file, folder or config key (a ValueError, as Detectron2's
    own config errors)."""


class PipelineError(SalfmixError):
    """A pipeline or study that cannot start or go on; names the option, file or run."""


class ReportError(SalfmixError, ValueError):
    """A run folder that cannot be reported (missing or malformed files)."""
