"""What a training step reports, kept on the device and read every ``TRAIN.LOG_PERIOD`` steps.

A step that reads its loss on the host (``float(loss)``) makes the host wait for the device, so it
can never queue the next step's work ahead. :class:`StepMonitor` instead adds each step's loss and
its non-finite flags into one small device tensor; :meth:`StepMonitor.read` brings it to the host
every ``period`` steps and at the end of the epoch: one host synchronisation per read and, under
DDP, one all-reduce per read that also carries every rank's stop request, so that all ranks stop
at the same step. Between reads the only collective of a DDP step is DDP's own gradient all-reduce.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

import torch
from torch import Tensor

from pretrain.engine import distributed as dist_utils
from pretrain.mixing.base import host_to_device

# The device accumulator: loss sum, steps with a non-finite loss, steps with a non-finite saliency.
_LOSS, _BAD_LOSS, _BAD_SALIENCY = range(3)


@dataclass
class Reading:
    """One read of the monitor, summed over every rank: the epoch's loss sum and counts so far,
    the non-finite counts, and the stop request (a signal number, 0 for none)."""

    loss_sum: float
    steps: int
    seen: int
    bad_loss: int
    bad_saliency: int
    signum: int

    @property
    def mean_loss(self) -> float:
        """The mean loss of the epoch's steps so far."""
        return self.loss_sum / max(self.steps, 1)


class StepMonitor:
    """Per-epoch device sums of the loss and the non-finite flags (see the module docstring)."""

    def __init__(self, device: torch.device, world: int, period: int) -> None:
        if period < 1:
            raise ValueError(f"TRAIN.LOG_PERIOD: expected at least 1, got {period}")
        self.device, self.world, self.period = device, world, int(period)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)
        self._zero = torch.zeros((), dtype=torch.float64, device=device)
        self.steps = self.seen = 0
        self.last_read = 0  # the step of the last read: a non-finite loss lies after it

    def start_epoch(self) -> None:
        """Zero the sums (each epoch reports its own mean loss)."""
        self.sums.zero_()
        self.steps = self.seen = self.last_read = 0

    def add(self, loss: Tensor, saliency: Tensor | None, batch: int) -> None:
        """Account one step: device ops only, nothing read back."""
        bad_saliency = self._zero if saliency is None else (~torch.isfinite(saliency).all()).to(torch.float64)
        loss = loss.detach().to(torch.float64)
        self.sums += torch.stack([loss, (~torch.isfinite(loss)).to(torch.float64), bad_saliency])
        self.steps += 1
        self.seen += int(batch)

    def due(self, last_step: bool) -> bool:
        """Whether this step ends with a read (every ``period`` steps and at the epoch's end)."""
        return last_step or self.steps % self.period == 0

    def read(self, signum: int = 0) -> Reading:
        """The sums on the host, with this rank's stop request ``signum``; under DDP summed over
        the ranks in one all-reduce (a SIGINT anywhere wins over any other signal)."""
        stop = [float(signum == signal.SIGINT), float(signum not in (0, signal.SIGINT))]
        host = torch.tensor([float(self.steps), float(self.seen), *stop], dtype=torch.float64)
        if self.world > 1:  # the host numbers join the sums for the one all-reduce (an asynchronous copy)
            vector = dist_utils.all_reduce_sum(
                torch.cat([self.sums, host_to_device({"host": host}, self.device)["host"]])
            )
            loss_sum, bad_loss, bad_saliency, steps, seen, sigint, other = vector.tolist()
        else:  # nothing to agree on: the device sums alone are read
            (loss_sum, bad_loss, bad_saliency), (steps, seen, sigint, other) = self.sums.tolist(), host.tolist()
        self.last_read = self.steps
        stop_signum = signal.SIGINT if sigint else signal.SIGTERM if other else 0
        return Reading(loss_sum, int(steps), int(seen), int(bad_loss), int(bad_saliency), stop_signum)
