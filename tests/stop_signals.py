"""A stand-in for :class:`salfmix.runs.signals.StopSignals`, for the tests of a stopped run.

Both stages' loops poll ``StopSignals().signum`` (inside ``with StopSignals() as stop``); the
stand-in answers ``None`` until its ``polls``-th poll and the signal from then on, as if the
signal had arrived between two polls, without sending one to the test process.
"""

from __future__ import annotations

import signal


class StopAfter:
    """``signum`` is seen from the ``polls``-th poll on; the instance is also its own factory and context."""

    def __init__(self, polls: int, signum: int = signal.SIGINT) -> None:
        self.polls, self.sig, self.count = polls, signum, 0

    def __call__(self) -> StopAfter:
        return self

    def __enter__(self) -> StopAfter:
        return self

    def __exit__(self, *exc) -> bool:
        return False

    @property
    def signum(self) -> int | None:
        self.count += 1
        return self.sig if self.count >= self.polls else None
