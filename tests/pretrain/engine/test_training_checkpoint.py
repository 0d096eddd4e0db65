"""Checkpoint files: atomic writes, pruning, finding the newest, RNG states."""

import os
import random

import numpy as np
import pytest
import torch

from pretrain.engine.checkpoint import (
    LAST,
    epoch_checkpoint_name,
    last_checkpoint,
    load_checkpoint,
    rng_states,
    save_epoch_checkpoint,
    set_rng_states,
)
from salfmix.runs.files import atomic_torch_save


def state(epoch):
    return {"model": {"w": torch.full((2,), float(epoch))}, "optimizer": {}, "epoch": epoch}


def test_save_prunes_and_points_last_checkpoint(tmp_path):
    out = str(tmp_path)
    for epoch in range(1, 5):
        path = save_epoch_checkpoint(state(epoch), out, epoch, keep=2)
        assert path == os.path.join(out, epoch_checkpoint_name(epoch))
    assert sorted(os.listdir(out)) == [LAST, "model_epoch0003.pth", "model_epoch0004.pth"]
    assert last_checkpoint(out) == os.path.join(out, "model_epoch0004.pth")
    assert load_checkpoint(last_checkpoint(out))["epoch"] == 4
    save_epoch_checkpoint(state(5), out, 5, keep=0)  # 0 keeps every one
    assert len([f for f in os.listdir(out) if f.startswith("model_epoch")]) == 3


def test_last_checkpoint_falls_back_to_the_newest_file(tmp_path):
    out = str(tmp_path)
    assert last_checkpoint(out) is None
    for epoch in (9, 10):
        atomic_torch_save(os.path.join(out, epoch_checkpoint_name(epoch)), state(epoch))
    assert last_checkpoint(out).endswith("model_epoch0010.pth")  # no marker: by epoch number
    (tmp_path / LAST).write_text("model_epoch0042.pth")  # a marker naming a removed file
    assert last_checkpoint(out).endswith("model_epoch0010.pth")
    assert sorted(os.listdir(out)) == [LAST, "model_epoch0009.pth", "model_epoch0010.pth"]  # no temp file left


def test_load_checkpoint_errors_name_the_file(tmp_path):
    bad = tmp_path / "model_epoch0001.pth"
    bad.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="model_epoch0001.pth: not a readable checkpoint"):
        load_checkpoint(str(bad))
    torch.save({"model": {}}, bad)
    with pytest.raises(ValueError, match="model_epoch0001.pth: not a training checkpoint \\(no 'optimizer' entry\\)"):
        load_checkpoint(str(bad))


def test_rng_states_round_trip():
    saved = rng_states()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    set_rng_states(saved)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
