"""CIFAR-10/100 python-layout reader and writer: round trip, compatibility with the official
readers' conventions (torchvision), and the errors."""

import os
import pickle
import pickletools

import numpy as np
import pytest
import torchvision.datasets.cifar as tv_cifar

from pretrain.data.cifar import read_cifar, write_cifar

C10, C100 = "cifar-10-batches-py", "cifar-100-python"


def _random_split(rng, n, classes):
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, classes, n)


@pytest.fixture
def written(tmp_path):
    rng = np.random.default_rng(0)
    tr, te = _random_split(rng, 23, 10), _random_split(rng, 7, 10)
    classes = [f"class{k}" for k in range(10)]
    write_cifar(str(tmp_path), "cifar10", *tr, *te, classes)
    return str(tmp_path), tr, te, classes


def test_round_trip(written):
    root, (trx, try_), (tex, tey), classes = written
    x, y, c = read_cifar(root, "train")
    assert x.dtype == np.uint8 and x.shape == (23, 32, 32, 3) and y.dtype == np.int64
    assert np.array_equal(x, trx) and np.array_equal(y, try_) and c == classes
    x, y, _ = read_cifar(os.path.join(root, C10), "val")  # the folder itself; val = test
    assert np.array_equal(x, tex) and np.array_equal(y, tey)
    batches = [f"data_batch_{k}" for k in range(1, 6)]
    assert sorted(os.listdir(os.path.join(root, C10))) == ["batches.meta"] + batches + ["test_batch"]


def test_official_pickle_conventions(written):
    root = written[0]
    path = os.path.join(root, C10, "data_batch_1")
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:2] == b"\x80\x02"  # protocol 2
    ops = {op.name for op, _, _ in pickletools.genops(raw)}
    # bytes as Python 2 str (BINSTRING), not Python 3's _codecs.encode(unicode) detour
    assert "BINSTRING" in ops and "SHORT_BINSTRING" in ops and b"_codecs" not in raw
    assert b"numpy.core.multiarray\n_reconstruct" in raw  # numpy 1 / official spelling
    with open(path, "rb") as f:
        as_bytes = pickle.load(f, encoding="bytes")
    with open(path, "rb") as f:
        as_latin1 = pickle.load(f, encoding="latin1")
    assert set(as_bytes) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert set(as_latin1) == {"batch_label", "labels", "data", "filenames"}
    assert as_bytes[b"data"].dtype == np.uint8 and as_bytes[b"data"].shape == (5, 3072)
    assert isinstance(as_bytes[b"labels"], list) and as_bytes[b"batch_label"] == b"training batch 1 of 5"
    with open(os.path.join(root, C10, "batches.meta"), "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    assert meta[b"label_names"][0] == b"class0" and meta[b"num_vis"] == 3072


def test_torchvision_reads_what_we_write(written, monkeypatch, tmp_path):
    root, (trx, try_), (tex, tey), classes = written
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # md5s are the real files'
    ds = tv_cifar.CIFAR10(root, train=True)
    assert np.array_equal(ds.data, trx) and ds.targets == list(try_) and ds.classes == classes
    rng = np.random.default_rng(1)
    tr, te = _random_split(rng, 11, 100), _random_split(rng, 5, 100)
    write_cifar(str(tmp_path / "c100"), "cifar100", *tr, *te, [f"fine{k}" for k in range(100)])
    ds = tv_cifar.CIFAR100(str(tmp_path / "c100"), train=False)
    assert np.array_equal(ds.data, te[0]) and ds.targets == list(te[1]) and ds.classes[:2] == ["fine0", "fine1"]
    x, y, c = read_cifar(str(tmp_path / "c100"), "train")
    assert np.array_equal(x, tr[0]) and np.array_equal(y, tr[1]) and len(c) == 100


def test_demo_cifar(demo_root):
    x, y, c = read_cifar(demo_root, "train", "cifar10")
    assert x.shape == (100, 32, 32, 3) and len(c) == 10 and np.array_equal(np.bincount(y), [10] * 10)
    x, y, c = read_cifar(os.path.join(demo_root, C100), "test")
    assert x.shape == (100, 32, 32, 3) and len(c) == 100


def test_ambiguous_root_and_missing_root(demo_root, tmp_path):
    with pytest.raises(ValueError, match="holds both CIFAR-10 and CIFAR-100"):
        read_cifar(demo_root, "train")
    with pytest.raises(FileNotFoundError, match="not a CIFAR root"):
        read_cifar(str(tmp_path), "train")
    with pytest.raises(ValueError, match="CIFAR split 'dev'"):
        read_cifar(demo_root, "dev", "cifar10")


def test_missing_batch_file(written):
    root = written[0]
    os.remove(os.path.join(root, C10, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match="data_batch_3 not found"):
        read_cifar(root, "train")


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def test_pickle_that_is_not_the_expected_dict(written):
    root = written[0]
    path = os.path.join(root, C10, "data_batch_2")
    _dump(path, [1, 2, 3])
    with pytest.raises(ValueError, match="data_batch_2: expected a pickled dict, got list"):
        read_cifar(root, "train")
    _dump(path, {b"data": np.zeros((4, 3072), np.uint8)})
    with pytest.raises(ValueError, match=r"data_batch_2: expected key b'labels'"):
        read_cifar(root, "train")
    _dump(path, {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4})
    with pytest.raises(ValueError, match=r"expected uint8 \[N, 3072\]"):
        read_cifar(root, "train")
    with open(path, "wb") as f:
        f.write(b"not a pickle at all")
    with pytest.raises(ValueError, match="data_batch_2: not a readable CIFAR pickle"):
        read_cifar(root, "train")


def test_pickle_with_foreign_globals_is_refused(written):
    root = written[0]
    _dump(os.path.join(root, C10, "test_batch"), {b"data": os.getcwd, b"labels": []})
    with pytest.raises(ValueError, match=r"test_batch: not a readable CIFAR pickle \(references .*getcwd"):
        read_cifar(root, "test")


def test_label_outside_class_list(written):
    root = written[0]
    _dump(os.path.join(root, C10, "test_batch"), {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]})
    with pytest.raises(ValueError, match=r"test_batch: label 10 outside the 10 classes of .*batches.meta"):
        read_cifar(root, "test")


def test_writer_checks_its_input(tmp_path):
    x = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"train_labels: expected 2 integers in \[0, 3\)"):
        write_cifar(str(tmp_path), "cifar10", x, np.array([0, 3]), x, np.array([0, 1]), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"test_images: expected uint8 \[N, 32, 32, 3\]"):
        write_cifar(str(tmp_path), "cifar10", x, np.array([0, 1]), x[:, :16], np.array([0, 1]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="name 'svhn'"):
        write_cifar(str(tmp_path), "svhn", x, np.array([0, 1]), x, np.array([0, 1]), ["a", "b"])
