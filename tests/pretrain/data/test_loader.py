"""BatchLoader: the epoch order is a pure function of (seed, epoch), ranks shard it like
DistributedSampler, batches hold the right images, and a resumed loader repeats the order."""

import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from pretrain.data.cache import PackedDataset
from pretrain.data.loader import BatchLoader, epoch_indices


def _dataset(tmp_path, n=30, hw=4):
    images = np.lib.format.open_memmap(str(tmp_path / "images.npy"), mode="w+", dtype=np.uint8, shape=(n, hw, hw, 3))
    images[:] = (np.arange(n) % 256).astype(np.uint8).reshape(n, 1, 1, 1)
    images.flush()
    images = np.load(str(tmp_path / "images.npy"), mmap_mode="r")
    labels = np.arange(n, dtype=np.int64) % 5
    return PackedDataset(images, labels, [f"c{k}" for k in range(5)], "fake", "train", str(tmp_path))


def test_permutation_is_a_function_of_seed_and_epoch():
    a = epoch_indices(100, epoch=3, seed=7, shuffle=True)
    assert np.array_equal(a, epoch_indices(100, epoch=3, seed=7, shuffle=True))
    assert np.array_equal(np.sort(a), np.arange(100))
    assert not np.array_equal(a, epoch_indices(100, epoch=4, seed=7, shuffle=True))
    assert not np.array_equal(a, epoch_indices(100, epoch=3, seed=8, shuffle=True))
    assert np.array_equal(a, np.random.default_rng([7, 3]).permutation(100))
    assert np.array_equal(epoch_indices(10, 0, 0, shuffle=False), np.arange(10))


def test_ranks_partition_the_epoch():
    shards = [epoch_indices(100, 2, 0, True, rank=r, world_size=4) for r in range(4)]
    assert all(len(s) == 25 for s in shards)
    assert np.array_equal(np.sort(np.concatenate(shards)), np.arange(100))  # no overlap, full cover
    full = epoch_indices(100, 2, 0, True)
    assert np.array_equal(shards[1], full[1::4])


@pytest.mark.parametrize("n, world", [(10, 3), (7, 4), (12, 2)])
def test_padding_and_sharding_match_distributed_sampler(n, world):
    for rank in range(world):
        ours = epoch_indices(n, 0, 0, shuffle=False, rank=rank, world_size=world)
        theirs = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
        assert ours.tolist() == theirs
    union = np.concatenate([epoch_indices(n, 5, 1, True, r, world) for r in range(world)])
    assert len(union) == -(-n // world) * world and set(union.tolist()) == set(range(n))


def test_batches_hold_the_indexed_images(tmp_path):
    ds = _dataset(tmp_path)
    loader = BatchLoader(ds, batch_size=8, shuffle=True, drop_last=False, seed=3)
    loader.set_epoch(1)
    assert len(loader) == 4
    seen = []
    for images, labels, idx in loader:
        assert images.dtype == torch.uint8 and images.shape[1:] == (4, 4, 3) and labels.dtype == torch.int64
        assert idx.dtype == torch.int64 and images.device.type == "cpu"
        assert torch.equal(images[:, 0, 0, 0].long(), idx) and torch.equal(labels, idx % 5)
        seen.append(idx)
    assert [len(s) for s in seen] == [8, 8, 8, 6]
    assert torch.cat(seen).tolist() == epoch_indices(30, 1, 3, True).tolist()


def test_drop_last_and_prefetch_do_not_change_the_order(tmp_path):
    ds = _dataset(tmp_path)
    a = BatchLoader(ds, 8, shuffle=True, drop_last=True, seed=0, prefetch=True)
    b = BatchLoader(ds, 8, shuffle=True, drop_last=True, seed=0, prefetch=False)
    assert len(a) == 3
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert [i.tolist() for _, _, i in a] == [i.tolist() for _, _, i in b]


def test_two_ranks_cover_the_epoch_without_overlap(tmp_path):
    ds = _dataset(tmp_path)
    per_rank = []
    for rank in range(2):
        loader = BatchLoader(ds, 4, shuffle=True, seed=11, rank=rank, world_size=2)
        loader.set_epoch(6)
        assert len(loader) == 4  # 15 samples per rank
        per_rank.append(torch.cat([idx for _, _, idx in loader]).tolist())
    assert not set(per_rank[0]) & set(per_rank[1]) and sorted(per_rank[0] + per_rank[1]) == list(range(30))


def test_resume_repeats_the_order(tmp_path):
    ds = _dataset(tmp_path)
    run = BatchLoader(ds, 8, shuffle=True, seed=5)
    run.set_epoch(4)
    state = run.state_dict()
    expected = [i.tolist() for _, _, i in run]
    resumed = BatchLoader(ds, 8, shuffle=True, seed=5)
    resumed.load_state_dict(state)
    assert resumed.epoch == 4 and [i.tolist() for _, _, i in resumed] == expected
    with pytest.raises(ValueError, match="saved seed 5 != this loader's seed 6"):
        BatchLoader(ds, 8, seed=6).load_state_dict(state)
    with pytest.raises(ValueError, match="expected key 'epoch'"):
        resumed.load_state_dict({})


def test_breaking_out_early_is_clean(tmp_path):
    loader = BatchLoader(_dataset(tmp_path), 4, shuffle=True)
    for k, _ in enumerate(loader):
        if k == 1:
            break
    assert sum(1 for _ in loader) == len(loader)


def test_bad_arguments(tmp_path):
    ds = _dataset(tmp_path)
    with pytest.raises(ValueError, match="batch_size=0"):
        BatchLoader(ds, 0)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        BatchLoader(ds, 4, rank=2, world_size=2)
