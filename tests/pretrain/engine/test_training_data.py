"""build_data: rank 0 packs first, the batch is split over the processes, evaluation sees each test sample once."""

import numpy as np
import pytest
import torch
from engine_helpers import BATCH, SIZES, config, small_opts

import pretrain.engine.training_data as data_mod
from pretrain.config import load_config
from pretrain.engine.training_data import build_data, load_splits

CONFIG = "tinyimagenet_preact18_none"


def cfg_for(root, tmp_path, **kw):
    return load_config(config(CONFIG), small_opts(root, str(tmp_path / "out"), **kw))


@pytest.fixture
def events(monkeypatch):
    """Records the order of load_dataset calls and broadcasts (as if torch.distributed were up)."""
    log, answer = [], {}
    real_load = data_mod.load_dataset

    def load(name, root, split, cache_dir, progress):
        log.append(("load", split, progress))
        return real_load(name, root, split, cache_dir, progress=False)

    def broadcast(obj, src=0):
        log.append(("broadcast", obj))
        return answer.get("value", obj)

    monkeypatch.setattr(data_mod, "load_dataset", load)
    monkeypatch.setattr(data_mod.dist_utils, "broadcast_object", broadcast)
    return log, answer


def test_rank0_loads_before_the_others(tiny_root, tmp_path, events):
    log, _ = events
    cfg = cfg_for(tiny_root, tmp_path)
    train, test = load_splits(cfg, rank=0)
    assert log == [("load", "train", True), ("load", "val", True), ("broadcast", None)]
    log.clear()
    other = load_splits(cfg, rank=1)
    assert log == [("broadcast", None), ("load", "train", False), ("load", "val", False)]
    assert [d.path for d in other] == [train.path, test.path]


def test_rank0_failure_reaches_the_others(tmp_path, events):
    log, answer = events
    cfg = cfg_for(str(tmp_path / "missing"), tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_splits(cfg, rank=0)
    assert log[-1][0] == "broadcast" and log[-1][1][0] == "FileNotFoundError"
    answer["value"] = log[-1][1]
    log.clear()
    with pytest.raises(FileNotFoundError, match="rank 0 failed to load the data: " + str(err.value)[:20]):
        load_splits(cfg, rank=1)
    assert log == [("broadcast", None)]  # rank 1 did not try to pack


@pytest.mark.parametrize("world,batch", [(1, BATCH), (2, BATCH), (3, 6), (4, BATCH), (4, 8)])
def test_batch_is_split_and_test_samples_counted_once(tiny_root, tmp_path, world, batch):
    cfg = cfg_for(tiny_root, tmp_path, SOLVER__BATCH_SIZE=batch, TEST__BATCH_SIZE=2)
    ranks = [build_data(cfg, rank, world, torch.device("cpu")) for rank in range(world)]
    num_classes, per_class, test_per_class = SIZES["tinyimagenet"]
    num_train = num_classes * per_class
    padded = -(-num_train // world) * world  # each rank gets the same share, the head repeated
    seen_train, seen_test = [], []
    for data in ranks:
        assert data.train_loader.batch_size == batch // world  # SOLVER.BATCH_SIZE is the total
        assert len(data.train_loader) == padded // batch  # the same step count on every rank
        data.train_loader.set_epoch(1)
        seen_train += [i for _, _, idx in data.train_loader for i in idx.tolist()]
        seen_test += [(bytes(x.numpy()), int(y)) for xs, ys in data.test_batches() for x, y in zip(xs, ys)]
    assert len(seen_train) == padded // batch * batch and set(seen_train) <= set(range(num_train))
    if padded % batch == 0:
        assert set(seen_train) == set(range(num_train))
    test = ranks[0].test
    full = [(bytes(np.asarray(test.images[i])), int(test.labels[i])) for i in range(len(test))]
    assert len(full) == num_classes * test_per_class and sorted(seen_test) == sorted(full)


def test_batch_must_divide_over_processes(tiny_root, tmp_path):
    with pytest.raises(ValueError, match="SOLVER.BATCH_SIZE: 4 is not divisible by the 3 processes"):
        build_data(cfg_for(tiny_root, tmp_path), 0, 3, torch.device("cpu"))
