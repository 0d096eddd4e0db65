"""A NaN / Inf training loss stops the run with a message naming the epoch and the last good checkpoint."""

import os
import re

import pytest
import torch
from engine_helpers import config, epoch_checkpoints, read_metrics, small_opts

import pretrain.engine.trainer as trainer_mod
from pretrain.config import load_config
from pretrain.engine.checkpoint import load_checkpoint

CONFIG = "tinyimagenet_preact18_none"


@pytest.mark.slow
def test_absurd_learning_rate_stops_with_the_epoch_and_last_good_checkpoint(tiny_root, run_pretrain, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit) as err:
        run_pretrain(CONFIG, small_opts(tiny_root, out, SOLVER__BASE_LR=1e10, SOLVER__MAX_EPOCHS=4))
    found = re.fullmatch(
        r"error: training loss is not finite \(NaN or Inf\) at epoch (\d), steps? [\d-]+ of 2; "
        r"stopped\. Last good checkpoint: (.*)",
        str(err.value),
    )
    assert found, str(err.value)
    epoch, last = int(found.group(1)), found.group(2)
    assert epoch < 4 and not os.path.exists(os.path.join(out, "model_final.pth"))
    if epoch == 1:
        assert last == "none" and epoch_checkpoints(out) == []
    else:  # the checkpoint of the epoch before, intact, and no record of the failed epoch
        assert last == os.path.join(out, f"model_epoch{epoch - 1:04d}.pth")
        assert load_checkpoint(last)["epoch"] == epoch - 1
        assert [r["epoch"] for r in read_metrics(out)] == list(range(1, epoch))


@pytest.mark.slow
def test_nan_in_a_later_epoch_keeps_the_last_good_checkpoint(tiny_root, run_pretrain, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    real_loss, epochs_seen = trainer_mod.mix_loss, []
    real_epoch = trainer_mod.Trainer.train_epoch

    def train_epoch(self, epoch):
        epochs_seen.append(epoch)
        return real_epoch(self, epoch)

    def loss(logits, result):  # the second epoch's first step goes wrong
        value = real_loss(logits, result)
        return value * float("nan") if epochs_seen[-1] == 2 else value

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", train_epoch)
    monkeypatch.setattr(trainer_mod, "mix_loss", loss)
    good = os.path.join(out, "model_epoch0001.pth")
    with pytest.raises(
        SystemExit,
        match=rf"^error: training loss is not finite \(NaN or Inf\) at epoch 2, steps 1-2 of 2; "
        rf"stopped\. Last good checkpoint: {good}$",
    ):
        run_pretrain(CONFIG, small_opts(tiny_root, out, SOLVER__MAX_EPOCHS=3, TRAIN__KEEP_CHECKPOINTS=1))
    assert epoch_checkpoints(out) == ["model_epoch0001.pth"]
    assert not os.path.exists(os.path.join(out, "model_final.pth"))
    state = load_checkpoint(good)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [r["epoch"] for r in read_metrics(out)] == [1]


def test_a_nan_on_another_process_stops_this_one_too(tiny_root, tmp_path, monkeypatch):
    """Under DDP the periodic read all-reduces the flags: a NaN on any rank stops every rank at
    the same read (here a second rank is simulated by the all-reduce adding its flag)."""
    trainer = trainer_mod.Trainer(load_config(config(CONFIG), small_opts(tiny_root, str(tmp_path / "out"))))
    trainer.world = trainer.monitor.world = 2
    monkeypatch.setattr(
        trainer_mod.dist_utils, "all_reduce_sum", lambda t: t + torch.tensor([0.0, 1.0, 0, 0, 0, 0, 0], dtype=t.dtype)
    )
    with pytest.raises(trainer_mod.NonFiniteLossError, match="not finite .* at epoch 1, steps 1-2 of 2"):
        trainer.train_epoch(1)


@pytest.mark.parametrize("period,bad_step,stops_after", [(1, 2, 2), (3, 1, 3), (3, 4, 6), (3, 7, 8)])
def test_a_nan_is_acted_on_at_the_next_read(tiny_root, tmp_path, monkeypatch, period, bad_step, stops_after):
    """The loss stays on the device between reads: a NaN at some step stops the epoch at the next
    read (every LOG_PERIOD steps and after the last step), naming the steps since the last read."""
    opts = small_opts(tiny_root, str(tmp_path / "out"), TRAIN__LOG_PERIOD=period, SOLVER__BATCH_SIZE=1)
    trainer = trainer_mod.Trainer(load_config(config(CONFIG), opts))
    steps, real_loss = [], trainer_mod.mix_loss

    def loss(logits, result):
        steps.append(len(steps) + 1)
        value = real_loss(logits, result)
        return value * float("nan") if steps[-1] == bad_step else value

    monkeypatch.setattr(trainer_mod, "mix_loss", loss)
    first = (bad_step - 1) // period * period + 1
    span = f"steps {first}-{stops_after}" if stops_after > first else f"step {first}"
    with pytest.raises(trainer_mod.NonFiniteLossError, match=f"at epoch 1, {span} of 8"):
        trainer.train_epoch(1)
    assert len(steps) == stops_after
