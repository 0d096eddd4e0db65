"""Metrics: top-k counts, and a writer for JSON lines plus TensorBoard."""
from __future__ import annotations

import json
import os
from typing import Dict, Sequence, Tuple

from torch import Tensor

from pretrain.files import atomic_write_text


def topk_correct(logits: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5)) -> Tuple[int, ...]:
    """How many targets are among the top-k logits, for each k (k capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # [B, kmax]
    hits = top == targets.view(-1, 1)
    return tuple(int(hits[:, : min(k, kmax)].any(dim=1).sum()) for k in ks)


class MetricsWriter:
    """Appends one JSON object per epoch to ``metrics.jsonl`` and logs scalars to TensorBoard."""

    def __init__(self, output_dir: str) -> None:
        os.makedirs(output_dir, exist_ok=True)
        self.path = os.path.join(output_dir, "metrics.jsonl")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(output_dir, "tb"))
        except ImportError:  # TensorBoard is optional; the JSON lines are the record
            pass

    def write(self, record: Dict[str, float]) -> None:
        """Record one epoch's metrics (flushed at once, so a killed run keeps them)."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key != "epoch":
                    self.tb.add_scalar(key, value, record["epoch"])
            self.tb.flush()

    def truncate_after(self, epoch: int) -> None:
        """Drop records of epochs after ``epoch`` (written by a run that was then interrupted)."""
        if not os.path.isfile(self.path):
            return
        with open(self.path, encoding="utf-8") as f:
            kept = [line for line in f if line.strip() and json.loads(line).get("epoch", 0) <= epoch]
        atomic_write_text(self.path, "".join(kept))

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.tb is not None:
            self.tb.close()
