"""``torchrun`` as the pipeline starts it: ``python -m salfmix.torchrun [torchrun options] SCRIPT ...``.

torch's launcher (``torch.distributed.run``) unchanged, except for how it ends after a stop signal.
On SIGINT / SIGTERM its workers stop at their own safe point (they print where and how to resume,
and exit 130 / 143); torchrun itself then raises ``SignalException`` (or, if the workers were
faster, ``ChildFailedError`` for their exit codes) and ends with a traceback and status 1. Here it
ends with the signal's status, 128 + N, and no traceback, so that whoever started it (the
pipeline, a scheduler, a shell) sees a stopped run, not a crash.

Without ``--log-dir`` torchrun makes a ``torchelastic_*`` folder in the temp folder for its
workers' error files and never removes it: a study or a test suite of launches left hundreds.
Here that folder is made inside one of our own, and what stays empty of files is removed at the end
(logs asked for with ``--redirects`` / ``--tee`` but no ``--log-dir`` stay where they were written).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile

STOPPED = {128 + signal.SIGINT, 128 + signal.SIGTERM}


def main() -> int:
    """Run torchrun with ``sys.argv``; returns the exit status (see the module docstring)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    # tempfile.tempdir is this process's only (not the environment's): the workers are unaffected.
    own = tempfile.tempdir = tempfile.mkdtemp(prefix="salfmix-torchrun-")
    try:
        torchrun_main()
    except SignalException as err:
        return 128 + int(err.sigval)
    except ChildFailedError as err:
        codes = {
            abs(int(failure.exitcode)) if failure.exitcode < 0 else int(failure.exitcode)
            for failure in err.failures.values()
        }
        codes = {128 + c if c < 128 else c for c in codes}  # a worker killed by signal N reports -N
        if codes and codes <= STOPPED:
            return max(codes)
        raise
    finally:
        tempfile.tempdir = None
        _remove_empty_folders(own)
    return 0


def _remove_empty_folders(root: str) -> None:
    """Remove ``root`` and the folders under it that hold no file, deepest first."""
    for folder, _, _ in os.walk(root, topdown=False):
        try:
            os.rmdir(folder)
        except OSError:  # not empty: a file under it is kept
            pass


if __name__ == "__main__":
    sys.exit(main())
