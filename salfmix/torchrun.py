"""``torchrun`` as the pipeline starts it: ``python -m salfmix.torchrun [torchrun options] SCRIPT ...``.

torch's launcher (``torch.distributed.run``) unchanged, except for how it ends after a stop signal.
On SIGINT / SIGTERM its workers stop at their own safe point (they print where and how to resume,
and exit 130 / 143); torchrun itself then raises ``SignalException`` (or, if the workers were
faster, ``ChildFailedError`` for their exit codes) and ends with a traceback and status 1. Here it
ends with the signal's status, 128 + N, and no traceback, so that whoever started it (the
pipeline, a scheduler, a shell) sees a stopped run, not a crash.
"""

from __future__ import annotations

import signal
import sys

STOPPED = {128 + signal.SIGINT, 128 + signal.SIGTERM}


def main() -> int:
    """Run torchrun with ``sys.argv``; returns the exit status (see the module docstring)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
