"""The run layer both stages share: atomic writes, the run folder's lock and manifest, stop signals.

``pretrain`` and ``detection`` may import this package; it imports neither (the checkpoint file
stays the only interface between them). See :mod:`salfmix.runs.folder` for the rules of a run folder.
"""

from salfmix.errors import RunError, RunLocked, RunRefused, WriteError
from salfmix.runs.cli import flags_anywhere, resume_command
from salfmix.runs.files import (
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)
from salfmix.runs.folder import FINISHED, FRESH, RESUME, RunFolder, is_finished
from salfmix.runs.lock import LOCK_FILE, RunLock
from salfmix.runs.manifest import MANIFEST, config_drift, read_manifest
from salfmix.runs.signals import Interrupted, StopSignals, exit_code

__all__ = [
    "FINISHED",
    "FRESH",
    "Interrupted",
    "LOCK_FILE",
    "MANIFEST",
    "RESUME",
    "RunError",
    "RunFolder",
    "RunLock",
    "RunLocked",
    "RunRefused",
    "StopSignals",
    "WriteError",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "config_drift",
    "exit_code",
    "flags_anywhere",
    "is_finished",
    "read_manifest",
    "remove_stale_temps",
    "resume_command",
]
