"""Top-k counts and the metrics.jsonl writer."""

import json

import torch

from pretrain.engine.metrics import MetricsWriter, topk_correct


def test_topk_correct_caps_k_at_the_class_count():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 0])
    assert topk_correct(logits, targets, (1, 2, 5)) == (1, 2, 3)


def test_truncate_after_drops_later_epochs(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    for epoch in (1, 2, 3):
        writer.write({"epoch": epoch, "train_loss": 1.0 / epoch})
    writer.truncate_after(1)
    writer.write({"epoch": 2, "train_loss": 0.25})
    writer.close()
    with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert records == [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.25}]
