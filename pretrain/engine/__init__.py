"""Wires data, models and mixing into a resumable, distributed training loop."""
