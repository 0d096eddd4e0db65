"""Fashion-MNIST IDX reader and writer, its packed cache, the stratified training subset, and the
real files' headers when Debian's dataset-fashion-mnist is installed."""

import gzip
import os
import struct

import numpy as np
import pytest
import torch

from pretrain.config import load_config
from pretrain.data.cache import load_dataset, stratified_indices
from pretrain.data.fashion_mnist import (
    CLASSES,
    DEFAULT_ROOT,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    fashion_files,
    idx_header,
    read_fashion_mnist,
    read_idx,
    write_fashion_mnist,
)
from pretrain.engine.training_data import build_data
from pretrain.mixing import MIXERS
from salfmix.config_files import config_dir

CONFIGS = config_dir("pretrain")
NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _split(rng, per_class, h=28, w=28):
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    return rng.integers(0, 256, (len(labels), h, w), dtype=np.uint8), labels


@pytest.fixture
def written(tmp_path):
    """A generated dataset in the official layout: 3 training and 2 test images per class."""
    rng = np.random.default_rng(0)
    train, test = _split(rng, 3), _split(rng, 2)
    root = str(tmp_path / "fashion")
    write_fashion_mnist(root, *train, *test)
    return root, train, test


def _rewrite(path, data: bytes):
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if path.endswith(".gz") else data)


def _raw(path) -> bytes:
    with gzip.open(path, "rb") as f:
        return f.read()


def test_round_trip_replicates_the_grey_channel(written):
    root, (trx, try_), (tex, tey) = written
    assert sorted(os.listdir(root)) == sorted(n + ".gz" for n in NAMES)
    x, y, classes = read_fashion_mnist(root, "train")
    assert x.dtype == np.uint8 and x.shape == (30, 28, 28, 3) and y.dtype == np.int64
    assert all(np.array_equal(x[..., c], trx) for c in range(3)) and np.array_equal(y, try_)
    assert classes == CLASSES and classes[0] == "T-shirt/top" and classes[9] == "Ankle boot"
    x, y, _ = read_fashion_mnist(root, "val")  # val = test
    assert np.array_equal(x[..., 1], tex) and np.array_equal(y, tey)


def test_written_bytes_follow_the_official_format(written):
    root, (trx, try_), _ = written
    images = _raw(os.path.join(root, NAMES[0] + ".gz"))
    labels = _raw(os.path.join(root, NAMES[1] + ".gz"))
    assert images[:16] == bytes.fromhex("00000803") + struct.pack(">III", 30, 28, 28)
    assert labels[:8] == bytes.fromhex("00000801") + struct.pack(">I", 30)
    # the dataset's own reader (utils/mnist_reader.py): skip 16 / 8 header bytes, read uint8
    assert np.array_equal(np.frombuffer(images, np.uint8, offset=16).reshape(30, 28, 28), trx)
    assert np.array_equal(np.frombuffer(labels, np.uint8, offset=8), try_)
    assert idx_header(os.path.join(root, NAMES[0] + ".gz"), IMAGES_MAGIC) == (30, 28, 28)


def test_uncompressed_names_are_read_and_gz_preferred(tmp_path):
    rng = np.random.default_rng(1)
    train, test = _split(rng, 1, 5, 7), _split(rng, 1, 5, 7)
    root = str(tmp_path)
    write_fashion_mnist(root, *train, *test, compress=False)
    assert sorted(os.listdir(root)) == sorted(NAMES)
    x, y, _ = read_fashion_mnist(root, "test")
    assert x.shape == (10, 5, 7, 3) and np.array_equal(x[..., 2], test[0]) and np.array_equal(y, test[1])
    other = _split(rng, 1, 5, 7)
    write_fashion_mnist(root, *other, *other)  # .gz files beside the raw ones
    assert fashion_files(root, "test") == [os.path.join(root, n + ".gz") for n in NAMES[2:]]
    assert np.array_equal(read_fashion_mnist(root, "test")[0][..., 0], other[0])


@pytest.mark.parametrize(
    "case, message",
    [
        ("not_gzip", r"t10k-images-idx3-ubyte.gz: corrupt or truncated gzip file"),
        ("cut_gzip", r"t10k-images-idx3-ubyte.gz: corrupt or truncated gzip file"),
        (
            "cut_data",
            r"t10k-images-idx3-ubyte.gz: 15679 data bytes after the header, its dimensions \[20, 28, 28\] "
            r"need 15680 \(truncated file\)",
        ),
        ("extra_data", r"t10k-images-idx3-ubyte.gz: 15681 data bytes .* \(trailing bytes\)"),
        ("cut_header", r"t10k-images-idx3-ubyte.gz: 10 bytes, the IDX header alone needs 16 \(truncated file\)"),
        ("empty", r"t10k-images-idx3-ubyte.gz: 0 bytes, too short for an IDX header"),
        ("labels_as_images", r"t10k-images-idx3-ubyte.gz: magic number 0x00000801, expected 0x00000803"),
        ("images_as_labels", r"t10k-labels-idx1-ubyte.gz: magic number 0x00000803, expected 0x00000801"),
        ("count_mismatch", r"t10k-labels-idx1-ubyte.gz: 19 labels, but .*t10k-images-idx3-ubyte.gz holds 20 images"),
        ("label_range", r"t10k-labels-idx1-ubyte.gz: label 10 at index 4, expected 0..9"),
        ("no_images", r"t10k-images-idx3-ubyte.gz: holds \[0, 28, 28\] images"),
    ],
)
def test_corrupt_files_give_one_line_naming_the_file(written, case, message):
    root, _, (tex, tey) = written
    img, lab = (os.path.join(root, n + ".gz") for n in NAMES[2:])
    raw_img, raw_lab = _raw(img), _raw(lab)
    if case == "not_gzip":
        with open(img, "wb") as f:
            f.write(b"<html>404 Not Found</html>")
    elif case == "cut_gzip":
        with open(img, "rb") as f:
            packed = f.read()
        with open(img, "wb") as f:
            f.write(packed[: len(packed) // 2])
    elif case == "cut_data":
        _rewrite(img, raw_img[:-1])
    elif case == "extra_data":
        _rewrite(img, raw_img + b"\0")
    elif case == "cut_header":
        _rewrite(img, raw_img[:10])
    elif case == "empty":
        _rewrite(img, b"")
    elif case == "labels_as_images":
        _rewrite(img, raw_lab)
    elif case == "images_as_labels":
        _rewrite(lab, raw_img)
    elif case == "count_mismatch":
        _rewrite(lab, struct.pack(">II", LABELS_MAGIC, 19) + raw_lab[8:-1])
    elif case == "label_range":
        _rewrite(lab, raw_lab[:12] + bytes([10]) + raw_lab[13:])
    elif case == "no_images":
        _rewrite(img, struct.pack(">IIII", IMAGES_MAGIC, 0, 28, 28))
    with pytest.raises(ValueError, match=message) as err:
        read_fashion_mnist(root, "test")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=message):  # the same through the cache; nothing half-packed stays
        load_dataset("fashion_mnist", root, "test", cache_dir=os.path.join(root, "cache"), progress=False)
    assert not [e for e in os.listdir(os.path.join(root, "cache")) if not e.startswith(".")]


def test_gzip_content_under_the_raw_name_is_explained(tmp_path):
    path = str(tmp_path / "t10k-labels-idx1-ubyte")
    with open(path, "wb") as f:
        f.write(gzip.compress(struct.pack(">II", LABELS_MAGIC, 1) + b"\0"))
    with pytest.raises(ValueError, match="magic number 0x1f8b0800.*gzip-compressed: give it the .gz name"):
        read_idx(path, LABELS_MAGIC)


def test_missing_files_and_bad_split(written, tmp_path):
    root = written[0]
    os.remove(os.path.join(root, NAMES[1] + ".gz"))
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte.gz not found .*dataset-fashion-mnist"):
        read_fashion_mnist(root, "train")
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST root .* is not a folder"):
        fashion_files(str(tmp_path / "nowhere"), "train")
    with pytest.raises(ValueError, match="Fashion-MNIST split 'dev': expected one of"):
        fashion_files(root, "dev")


def test_packed_cache_equals_the_reader_and_follows_the_files(written, tmp_path):
    root = written[0]
    cdir = str(tmp_path / "cache")
    pack = load_dataset("fashion_mnist", root, "val", cache_dir=cdir, progress=False)
    x, y, classes = read_fashion_mnist(root, "test")
    assert pack.split == "test" and pack.classes == classes and pack.num_classes == 10
    assert np.array_equal(pack.images, x) and np.array_equal(pack.labels, y)
    assert load_dataset("fashion_mnist", root, "test", cache_dir=cdir, progress=False).path == pack.path
    rng = np.random.default_rng(5)
    write_fashion_mnist(root, *_split(rng, 3), *_split(rng, 2))
    again = load_dataset("fashion_mnist", root, "test", cache_dir=cdir, progress=False)
    assert again.path != pack.path and not os.path.exists(pack.path)
    assert np.array_equal(again.images, read_fashion_mnist(root, "test")[0])


def _reference_stratified(labels, per_class, num_classes, seed):
    """The documented rule, spelled out: one generator, classes in order, permute, keep the head."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(num_classes):
        keep += list(rng.permutation([i for i, v in enumerate(labels) if v == c])[:per_class])
    return sorted(keep)


def test_stratified_indices():
    labels = np.random.default_rng(3).integers(0, 4, 200)
    idx = stratified_indices(labels, 7, 4, seed=11)
    assert list(idx) == _reference_stratified(labels, 7, 4, 11)
    assert np.bincount(labels[idx], minlength=4).tolist() == [7, 7, 7, 7] and len(set(idx)) == 28
    assert np.array_equal(stratified_indices(labels, 7, 4, seed=11), idx)  # deterministic
    assert not np.array_equal(stratified_indices(labels, 7, 4, seed=12), idx)
    assert set(stratified_indices(labels, 3, 4, seed=11)) <= set(idx)  # nested in per_class
    smallest = int(np.bincount(labels).min())
    with pytest.raises(ValueError, match=f"{smallest + 1} per class asked, class .* has only {smallest}"):
        stratified_indices(labels, smallest + 1, 4)
    with pytest.raises(ValueError, match="class 4 has only 0"):
        stratified_indices(labels, 1, 5)


def test_subset_copies_the_samples_and_records_their_positions(written, tmp_path):
    pack = load_dataset("fashion_mnist", written[0], "train", cache_dir=str(tmp_path), progress=False)
    sub = pack.subset(np.array([1, 4, 9, 20]))
    assert np.array_equal(sub.images, pack.images[[1, 4, 9, 20]]) and np.array_equal(
        sub.labels, pack.labels[[1, 4, 9, 20]]
    )
    assert sub.indices.tolist() == [1, 4, 9, 20] and sub.classes == pack.classes and len(sub) == 4
    assert sub.subset(np.array([0, 3])).indices.tolist() == [1, 20]  # positions stay in the packed split
    with pytest.raises(ValueError, match="subset: expected increasing indices in \\[0, 30\\)"):
        pack.subset(np.array([4, 1]))
    with pytest.raises(ValueError, match="subset: expected increasing indices"):
        pack.subset(np.array([29, 30]))


def _cfg(root, tmp_path, *opts):
    base = os.path.join(CONFIGS, "Base-FashionMNIST-ResNet20.yaml")
    return load_config(
        base,
        [
            "DATA.ROOT",
            root,
            "DATA.CACHE_DIR",
            str(tmp_path / "cache"),
            "OUTPUT_DIR",
            str(tmp_path / "out"),
            "SOLVER.BATCH_SIZE",
            "4",
            *opts,
        ],
    )


def test_build_data_trains_on_the_subset_and_tests_on_everything(written, tmp_path):
    root, (_, try_), (_, tey) = written
    cfg = _cfg(root, tmp_path, "DATA.TRAIN_PER_CLASS", "2", "DATA.SUBSET_SEED", "5")
    data = build_data(cfg, 0, 1, torch.device("cpu"))
    assert len(data.train) == 20 and np.bincount(data.train.labels).tolist() == [2] * 10
    assert list(data.train.indices) == _reference_stratified(try_, 2, 10, 5)
    assert np.array_equal(data.train.labels, try_[data.train.indices])
    assert len(data.test) == len(tey) and data.test.indices is None and data.input_size == 32
    other_seed = build_data(
        _cfg(root, tmp_path, "DATA.TRAIN_PER_CLASS", "2", "SEED", "9", "DATA.SUBSET_SEED", "5"),
        0,
        1,
        torch.device("cpu"),
    )
    assert np.array_equal(other_seed.train.indices, data.train.indices)  # SEED does not move the subset
    whole = build_data(_cfg(root, tmp_path, "DATA.TRAIN_PER_CLASS", "0"), 0, 1, torch.device("cpu"))
    assert len(whole.train) == len(try_)
    with pytest.raises(
        ValueError, match="DATA.TRAIN_PER_CLASS: 4 per class asked, class 0 has only 3 .* in fashion_mnist/train"
    ):
        build_data(_cfg(root, tmp_path, "DATA.TRAIN_PER_CLASS", "4"), 0, 1, torch.device("cpu"))
    with pytest.raises(ValueError, match="DATA.TRAIN_PER_CLASS: expected images per class >= 0"):
        _cfg(root, tmp_path, "DATA.TRAIN_PER_CLASS", "-1")


def test_every_method_runs_from_the_fashion_bases():
    for name in ("Base-FashionMNIST-ResNet20.yaml", "Base-FashionMNIST-ResNet20-Memorising.yaml"):
        for method in MIXERS:
            cfg = load_config(os.path.join(CONFIGS, name), ["MIX.METHOD", method])
            assert cfg.MIX.METHOD == method and cfg.DATA.NAME == "fashion_mnist" and cfg.MODEL.ARCH == "resnet20"
            assert cfg.DATA.ROOT == DEFAULT_ROOT


@pytest.mark.skipif(not os.path.isdir(DEFAULT_ROOT), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_files_headers_and_labels():
    for split, count in (("train", 60000), ("test", 10000)):
        images, labels = fashion_files(DEFAULT_ROOT, split)
        assert idx_header(images, IMAGES_MAGIC) == (count, 28, 28)
        y = read_idx(labels, LABELS_MAGIC)
        # the dataset's documentation: balanced classes, 6,000 / 1,000 of each
        assert y.shape == (count,) and np.bincount(y).tolist() == [count // 10] * 10
