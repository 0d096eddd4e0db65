"""Atomic file writes, path first: a temp file in the target's folder, fsync, then ``os.replace``.

A reader (or a resumed run) sees either the old file or the complete new one, never a half-written
one. Any error while writing removes the temp file and leaves the old file as it was; an
``OSError`` (a full disk, no permission), also one that a writer such as ``torch.save`` wraps in its
own exception, becomes a :class:`~salfmix.errors.WriteError` naming the path and the cause.

Temp files are named ``.<name>.<pid>-<12 hex>.tmp`` (the writer's process id; older ones
``.<name>.<12 hex>.tmp``); :func:`remove_stale_temps` deletes those a killed process left: all of
them while holding the folder's lock (no live writer can own them), or, in a folder without a lock
(``weights/``), only those whose writer is no longer alive.
"""

from __future__ import annotations

import errno
import json
import os
import re
import uuid
from collections.abc import Callable
from typing import Any, BinaryIO

from salfmix.errors import WriteError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "os_error_in",
    "remove_stale_temps",
]

_TEMP = re.compile(r"^\..+\.(?:(\d+)-)?[0-9a-f]{12}\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def os_error_in(err: BaseException) -> OSError | None:
    """The ``OSError`` that caused ``err`` (itself, or its ``__cause__`` / ``__context__`` chain), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def describe_os_error(err: OSError) -> str:
    """``strerror`` of ``err`` in one line (e.g. ``No space left on device``)."""
    if err.errno is not None and not err.strerror:
        return os.strerror(err.errno)
    return " ".join(str(err.strerror or err).split())


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a new binary temp file next to ``path`` (its folder is created if
    missing), then rename it to ``path``.

    Raises :class:`~salfmix.errors.WriteError` when the writing fails for an ``OSError``; any other
    exception of ``write`` is re-raised as it is. Either way no temp file is left.
    """
    folder = os.path.dirname(path) or "."
    # A missing folder is created (as the detection writers always did); a failure to do so is
    # a WriteError like any other.
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise WriteError(path, describe_os_error(err)) from None
    # open(..., "xb") rather than mkstemp: the file gets the umask's permissions, not 0600.
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # a full disk may only say so here, and a crash must not leave zeros
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        cause = os_error_in(err) if isinstance(err, Exception) else None
        if cause is not None:
            raise WriteError(path, describe_os_error(cause)) from None
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (NaN refused: JSON has none) plus a newline, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def atomic_torch_save(path: str, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def remove_stale_temps(folder: str, dead_writers_only: bool = False) -> list[str]:
    """Delete the temp files of :func:`atomic_write` in ``folder`` (not below); returns their names.
    ``dead_writers_only``: only those whose writing process is gone (for a folder that no lock
    guards; a temp file without a process id is then left alone)."""
    removed = []
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for name in sorted(names):
        found = _TEMP.match(name)
        if found and dead_writers_only and (found.group(1) is None or _alive(int(found.group(1)))):
            continue
        if found:
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except FileNotFoundError:
                pass
            except OSError as err:
                if err.errno != errno.EISDIR:
                    raise WriteError(os.path.join(folder, name), describe_os_error(err)) from None
    return removed
