"""tools/make_demo_data.py: the real layouts, readable by torchvision, idempotent, and careful."""

import os

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import ImageFolder

from pretrain.data.cache import load_dataset

TINY = "tiny-imagenet-200"


def _run(tool, out, args):
    return tool.main(tool.get_parser().parse_args(["--out", str(out), *args]))


def _mtimes(folder):
    return {
        os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(folder)
        if ".salfmix_cache" not in d
        for f in files
    }


def test_tinyimagenet_layout(demo_root):
    root = os.path.join(demo_root, TINY)
    with open(os.path.join(root, "wnids.txt")) as f:
        wnids = f.read().split()
    assert wnids == ["n00000000", "n00000001", "n00000002", "n00000003"]
    with open(os.path.join(root, "words.txt")) as f:
        assert f.readline().startswith("n00000000\tgenerated class 0")
    for wnid in wnids:
        names = sorted(os.listdir(os.path.join(root, "train", wnid, "images")))
        assert names == sorted(f"{wnid}_{i}.JPEG" for i in range(10))
        with open(os.path.join(root, "train", wnid, f"{wnid}_boxes.txt")) as f:
            assert len(f.read().splitlines()) == 10
    with open(os.path.join(root, "val", "val_annotations.txt")) as f:
        rows = [line.split("\t") for line in f.read().splitlines()]
    assert len(rows) == 20 and all(
        len(r) == 6 and r[0] == f"val_{i}.JPEG" and r[1] in wnids for i, r in enumerate(rows)
    )
    assert sorted(os.listdir(os.path.join(root, "val", "images"))) == sorted(r[0] for r in rows)
    with Image.open(os.path.join(root, "val", "images", "val_0.JPEG")) as im:
        assert im.format == "JPEG" and im.size == (64, 64)
    with open(os.path.join(root, "GENERATED.txt")) as f:
        assert "NOT the real dataset" in f.read()


def test_torchvision_imagefolder_sees_the_classes(demo_root):
    folder = ImageFolder(os.path.join(demo_root, TINY, "train"))
    assert folder.classes == [f"n{k:08d}" for k in range(4)] and len(folder) == 40
    assert [folder.classes[y] for _, y in folder.samples] == [p.split(os.sep)[-3] for p, _ in folder.samples]


def test_cifar_layouts(demo_root):
    assert sorted(os.listdir(os.path.join(demo_root, "cifar-10-batches-py"))) == sorted(
        ["GENERATED.txt", "batches.meta", "test_batch"] + [f"data_batch_{k}" for k in range(1, 6)]
    )
    assert sorted(os.listdir(os.path.join(demo_root, "cifar-100-python"))) == ["GENERATED.txt", "meta", "test", "train"]


def test_generated_data_is_learnable_by_class(demo_root, tmp_path):
    """Class means differ far more between classes than the images within a class vary around them."""
    ds = load_dataset("cifar10", demo_root, "train", cache_dir=str(tmp_path), progress=False)
    x = np.asarray(ds.images, dtype=np.float64).reshape(len(ds), -1)
    means = np.stack([x[ds.labels == k].mean(0) for k in range(10)])
    nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == ds.labels).mean() > 0.5  # a nearest-class-mean rule already beats chance (0.1)


def test_idempotent_and_shrinking_removes_stale_files(demo_tool, demo_args, tmp_path, capsys):
    _run(demo_tool, tmp_path, demo_args)
    assert "NOT the real datasets" in capsys.readouterr().out
    before = _mtimes(tmp_path)
    _run(demo_tool, tmp_path, demo_args)
    assert _mtimes(tmp_path) == before  # nothing rewritten: caches keyed on mtimes stay valid
    shrunk = ["--classes", "2", "--train-per-class", "3", "--val-per-class", "1", "--datasets", "tinyimagenet"]
    _run(demo_tool, tmp_path, shrunk)
    root = os.path.join(str(tmp_path), TINY)
    assert sorted(os.listdir(os.path.join(root, "train"))) == ["n00000000", "n00000001"]
    assert sorted(os.listdir(os.path.join(root, "val", "images"))) == ["val_0.JPEG", "val_1.JPEG"]
    assert len(load_dataset("tinyimagenet", root, "train", cache_dir=str(tmp_path / "c"), progress=False)) == 6


def test_refuses_to_overwrite_a_folder_it_did_not_make(demo_tool, demo_args, tmp_path):
    real = tmp_path / TINY
    real.mkdir()
    (real / "wnids.txt").write_text("n01443537\n")
    with pytest.raises(FileExistsError, match="has no GENERATED.txt: not made by make_demo_data"):
        _run(demo_tool, tmp_path, demo_args)
    assert (real / "wnids.txt").read_text() == "n01443537\n"


def test_bad_counts(demo_tool, tmp_path):
    with pytest.raises(ValueError, match="--train-per-class=0"):
        _run(demo_tool, tmp_path, ["--train-per-class", "0"])
