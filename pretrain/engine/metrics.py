"""Metrics: top-k counts, and a writer for JSON lines plus TensorBoard."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from torch import Tensor

from salfmix.errors import WriteError
from salfmix.runs.files import atomic_write_text, describe_os_error


def topk_correct(logits: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5)) -> tuple[int, ...]:
    """How many targets are among the top-k logits, for each k (k capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # [B, kmax]
    hits = top == targets.view(-1, 1)
    return tuple(int(hits[:, : min(k, kmax)].any(dim=1).sum()) for k in ks)


def read_records(path: str) -> list[dict[str, float]]:
    """The records of a ``metrics.jsonl`` (empty if there is none), up to a torn line if any."""
    if not os.path.isfile(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:  # a torn last line of an older writer: what follows it cannot be trusted
                break
    return records


class MetricsWriter:
    """One JSON object per epoch in ``metrics.jsonl`` (plus TensorBoard scalars), never two per epoch.

    The file is rewritten atomically on every record (it holds one short line per epoch), so a
    killed run or a full disk never leaves half a line; a record for an epoch already present
    replaces it and every later one. A resumed run calls :meth:`truncate_after` with the epoch of
    its checkpoint, which also purges the later TensorBoard events.
    """

    def __init__(self, output_dir: str) -> None:
        os.makedirs(output_dir, exist_ok=True)
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, "metrics.jsonl")
        self.records: list[dict[str, float]] = read_records(self.path)
        self.tb = None
        self._purge_step: int | None = None

    def _save(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def _tensorboard(self):
        if self.tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(os.path.join(self.output_dir, "tb"), purge_step=self._purge_step)
            except ImportError:  # TensorBoard is optional; the JSON lines are the record
                self.tb = False
        return self.tb

    def write(self, record: dict[str, float]) -> None:
        """Record one epoch's metrics (on disk at once, so a killed run keeps them)."""
        self.records = [r for r in self.records if r.get("epoch", 0) < record["epoch"]] + [dict(record)]
        self._save()
        tb = self._tensorboard()
        if tb:
            try:
                for key, value in record.items():
                    if key != "epoch":
                        tb.add_scalar(key, value, record["epoch"])
                tb.flush()
            except OSError as err:
                raise WriteError(os.path.join(self.output_dir, "tb"), describe_os_error(err)) from None

    def truncate_after(self, epoch: int) -> None:
        """Drop records (and TensorBoard events) of epochs after ``epoch``: the run resumes from there."""
        self._purge_step = epoch + 1
        kept = [r for r in self.records if r.get("epoch", 0) <= epoch]
        if kept != self.records or (os.path.isfile(self.path) and not kept):
            self.records = kept
            self._save()

    def last_record(self) -> dict[str, float]:
        """The newest record (empty if none)."""
        return dict(self.records[-1]) if self.records else {}

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.tb:
            self.tb.close()
