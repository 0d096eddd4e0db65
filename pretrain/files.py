"""Atomic file writes: a temp file in the target's folder, then ``os.replace``.

A reader (or a resumed run) sees either the old file or the complete new one, never a
half-written one; on any error the temp file is removed and the old file is left as it was.
"""
from __future__ import annotations

import os
import uuid
from typing import BinaryIO, Callable


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a new binary temp file next to ``path``, then rename it to ``path``."""
    # open(..., "xb") rather than mkstemp: the file gets the umask's permissions, not 0600.
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
