"""Packed cache: contents equal the sources, reuse, rebuild on change, atomic builds, errors."""

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageFile

import pretrain.data.cache as cache
from pretrain.data.cache import default_cache_dir, load_dataset
from pretrain.data.cifar import read_cifar
from pretrain.data.tinyimagenet import list_tinyimagenet

TINY = "tiny-imagenet-200"


def _packs(cache_dir):
    return sorted(e for e in os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []


def test_tinyimagenet_pack_equals_decoded_files(demo_root, tmp_path):
    ds = load_dataset("tinyimagenet", demo_root, "train", cache_dir=str(tmp_path), progress=False)
    paths, labels, classes = list_tinyimagenet(demo_root, "train")
    assert isinstance(ds.images, np.memmap) and ds.images.dtype == np.uint8 and ds.images.shape == (40, 64, 64, 3)
    assert np.array_equal(ds.labels, labels) and ds.labels.dtype == np.int64
    assert (
        ds.classes == classes
        and ds.num_classes == 4
        and len(ds) == 40
        and (ds.name, ds.split) == ("tinyimagenet", "train")
    )
    modes = []
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            modes.append(im.mode)
            assert np.array_equal(ds.images[i], np.asarray(im.convert("RGB")))
    grey = modes.index("L")  # the generator stores every 20th image greyscale: converted to RGB
    assert modes.count("L") == 2 and np.array_equal(ds.images[grey][..., 0], ds.images[grey][..., 2])
    with open(os.path.join(ds.path, "meta.json")) as f:
        meta = json.load(f)
    assert meta["shape"] == [40, 64, 64, 3] and meta["classes"] == classes and len(meta["fingerprint"]) == 64


def test_cifar_packs_equal_reader(demo_root, tmp_path):
    for name, split in (("cifar10", "train"), ("cifar100", "val")):
        ds = load_dataset(name, demo_root, split, cache_dir=str(tmp_path), progress=False)
        x, y, c = read_cifar(demo_root, split, name)
        assert np.array_equal(ds.images, x) and np.array_equal(ds.labels, y) and ds.classes == c
    assert ds.split == "test"  # val is an alias


def test_reused_when_unchanged_rebuilt_when_a_source_changes(demo_copy, tmp_path):
    root = demo_copy(TINY)
    cdir = str(tmp_path / "cache")
    first = load_dataset("tinyimagenet", root, "val", cache_dir=cdir, progress=False)
    stamp = os.stat(os.path.join(first.path, "images.npy")).st_mtime_ns
    again = load_dataset("tinyimagenet", root, "val", cache_dir=cdir, progress=False)
    assert again.path == first.path and os.stat(os.path.join(first.path, "images.npy")).st_mtime_ns == stamp

    target = os.path.join(root, "val", "images", "val_3.JPEG")
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(target, quality=95)
    rebuilt = load_dataset("tinyimagenet", root, "val", cache_dir=cdir, progress=False)
    assert rebuilt.path != first.path and not os.path.exists(first.path)  # the stale pack is removed
    assert np.abs(rebuilt.images[3].astype(int) - 7).max() <= 2
    assert _packs(cdir) == [os.path.basename(rebuilt.path)]

    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a touch alone also counts
    assert load_dataset("tinyimagenet", root, "val", cache_dir=cdir, progress=False).path != rebuilt.path


def test_cifar_rebuilt_when_a_pickle_changes(demo_copy, tmp_path):
    folder = demo_copy("cifar-10-batches-py")
    first = load_dataset("cifar10", folder, "train", cache_dir=str(tmp_path / "c"), progress=False)
    path = os.path.join(folder, "data_batch_4")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = load_dataset("cifar10", folder, "train", cache_dir=str(tmp_path / "c"), progress=False)
    assert second.path != first.path and np.array_equal(second.images, first.images)


def test_truncated_image_names_the_file_and_leaves_no_cache(demo_copy, tmp_path):
    root = demo_copy(TINY)
    bad = os.path.join(root, "train", "n00000001", "images", "n00000001_4.JPEG")
    with open(bad, "rb") as f:
        data = f.read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2])
    cdir = str(tmp_path / "cache")
    with pytest.raises(ValueError, match=r"n00000001_4.JPEG: cannot decode image \(image file is truncated"):
        load_dataset("tinyimagenet", root, "train", cache_dir=cdir, progress=False, num_workers=2)
    assert _packs(cdir) == []  # neither a pack nor a leftover .tmp build folder


def test_unreadable_file_names_it(demo_copy, tmp_path):
    root = demo_copy(TINY)
    with open(os.path.join(root, "val", "images", "val_2.JPEG"), "wb") as f:
        f.write(b"this is no JPEG")
    with pytest.raises(ValueError, match=r"val_2.JPEG: cannot decode image"):
        load_dataset("tinyimagenet", root, "val", cache_dir=str(tmp_path / "c"), progress=False)


def test_crash_mid_build_leaves_nothing_valid_looking(demo_copy, tmp_path, monkeypatch):
    root = demo_copy(TINY)
    real = cache.decode_image
    calls = []

    def flaky(path, *a, **k):
        calls.append(path)
        if len(calls) == 7:
            raise KeyboardInterrupt  # e.g. Ctrl-C halfway
        return real(path, *a, **k)

    monkeypatch.setattr(cache, "decode_image", flaky)
    cdir = str(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        load_dataset("tinyimagenet", root, "val", cache_dir=cdir, progress=False, num_workers=1)
    assert _packs(cdir) == []
    monkeypatch.setattr(cache, "decode_image", real)
    assert len(load_dataset("tinyimagenet", root, "val", cache_dir=cdir, progress=False)) == 20


def test_corrupt_pack_is_rebuilt(demo_root, tmp_path):
    cdir = str(tmp_path)
    ds = load_dataset("cifar10", demo_root, "test", cache_dir=cdir, progress=False)
    expected = np.array(ds.images)
    with open(os.path.join(ds.path, "images.npy"), "r+b") as f:
        f.truncate(1000)
    again = load_dataset("cifar10", demo_root, "test", cache_dir=cdir, progress=False)
    assert np.array_equal(again.images, expected)


def test_size_mismatch_refused_unless_size_given(demo_copy, tmp_path):
    root = demo_copy(TINY)
    odd = os.path.join(root, "val", "images", "val_4.JPEG")
    Image.fromarray(np.zeros((48, 40, 3), np.uint8)).save(odd)
    with pytest.raises(ValueError, match=r"val_4.JPEG: image is 48x40, the split's first image is 64x64 \(pass size="):
        load_dataset("tinyimagenet", root, "val", cache_dir=str(tmp_path / "c"), progress=False)
    ds = load_dataset("tinyimagenet", root, "val", cache_dir=str(tmp_path / "c"), size=32, progress=False)
    assert ds.images.shape == (20, 32, 32, 3)


def test_cifar_resized_at_pack_time(demo_root, tmp_path):
    ds = load_dataset("cifar10", demo_root, "test", cache_dir=str(tmp_path), size=(16, 24), progress=False)
    x, _, _ = read_cifar(demo_root, "test", "cifar10")
    assert ds.images.shape == (50, 16, 24, 3)
    ref = np.asarray(Image.fromarray(x[5]).resize((24, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(ds.images[5], ref)


def test_truncated_images_flag_must_stay_false(demo_root, tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ValueError, match="LOAD_TRUNCATED_IMAGES is True"):
        load_dataset("tinyimagenet", demo_root, "val", cache_dir=str(tmp_path), progress=False)


def test_default_cache_dir(demo_copy, tmp_path, monkeypatch):
    root = demo_copy(TINY)
    ds = load_dataset("tinyimagenet", root, "val", progress=False)
    assert os.path.dirname(ds.path) == os.path.join(root, ".salfmix_cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(cache, "_writable_dir", lambda path: False)  # as for a read-only dataset root
    fallback = default_cache_dir(root)
    assert fallback.startswith(os.path.join(str(tmp_path / "home"), ".cache", "salfmix") + os.sep)
    assert fallback != default_cache_dir(str(tmp_path)) and len(os.path.basename(fallback)) == 16


def test_bad_name(demo_root):
    with pytest.raises(ValueError, match="dataset name 'imagenet'"):
        load_dataset("imagenet", demo_root, "train")
