"""TinyImageNet-200 layout reader: labels from folders / annotations, and every error it names."""

import os
import shutil

import numpy as np
import pytest

from pretrain.data.tinyimagenet import list_tinyimagenet, read_words

TINY = "tiny-imagenet-200"


def test_train_labels_match_class_folders(demo_root):
    paths, labels, classes = list_tinyimagenet(os.path.join(demo_root, TINY), "train")
    assert classes == [f"n{k:08d}" for k in range(4)]
    assert len(paths) == 40 and labels.dtype == np.int64
    for path, y in zip(paths, labels):
        parts = path.split(os.sep)
        assert parts[-3] == classes[y] and parts[-2] == "images" and path.endswith(".JPEG")
    assert np.all(np.diff(labels) >= 0)  # grouped by class in wnids.txt order


def test_val_labels_follow_annotations(demo_root):
    root = os.path.join(demo_root, TINY)
    paths, labels, classes = list_tinyimagenet(root, "val")
    with open(os.path.join(root, "val", "val_annotations.txt")) as f:
        rows = [line.split("\t") for line in f.read().splitlines()]
    assert [os.path.basename(p) for p in paths] == [r[0] for r in rows]
    assert [classes[y] for y in labels] == [r[1] for r in rows]


def test_parent_folder_is_accepted_and_words_read(demo_root):
    a = list_tinyimagenet(demo_root, "val")
    b = list_tinyimagenet(os.path.join(demo_root, TINY), "val")
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    assert read_words(demo_root)["n00000001"].startswith("generated class 1")


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        list_tinyimagenet(str(tmp_path / "nope"), "train")
    with pytest.raises(FileNotFoundError, match="wnids.txt not found"):
        list_tinyimagenet(str(tmp_path), "train")


def test_bad_split(demo_root):
    with pytest.raises(ValueError, match="expected one of"):
        list_tinyimagenet(demo_root, "test")


def test_missing_split_folder(demo_copy):
    root = demo_copy(TINY)
    shutil.rmtree(os.path.join(root, "train"))
    with pytest.raises(FileNotFoundError, match=r"train not found \(the train split"):
        list_tinyimagenet(root, "train")


def test_missing_annotation_file(demo_copy):
    root = demo_copy(TINY)
    os.remove(os.path.join(root, "val", "val_annotations.txt"))
    with pytest.raises(FileNotFoundError, match="val_annotations.txt not found"):
        list_tinyimagenet(root, "val")


def test_class_folder_without_images(demo_copy):
    root = demo_copy(TINY)
    folder = os.path.join(root, "train", "n00000002", "images")
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    with pytest.raises(ValueError, match=r"n00000002/images: no images"):
        list_tinyimagenet(root, "train")


def test_class_folder_missing_or_unknown(demo_copy):
    root = demo_copy(TINY)
    os.rename(os.path.join(root, "train", "n00000003"), os.path.join(root, "train", "n99999999"))
    with pytest.raises(ValueError, match="class folder 'n99999999' is not in .*wnids.txt"):
        list_tinyimagenet(root, "train")
    shutil.rmtree(os.path.join(root, "train", "n99999999"))
    with pytest.raises(FileNotFoundError, match="n00000003 of wnids.txt has no training folder"):
        list_tinyimagenet(root, "train")


def _edit_annotations(root, lineno, text):
    path = os.path.join(root, "val", "val_annotations.txt")
    with open(path) as f:
        lines = f.read().splitlines()
    lines[lineno - 1] = text
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def test_annotation_line_that_does_not_parse(demo_copy):
    root = demo_copy(TINY)
    _edit_annotations(root, 3, "val_2.JPEG n00000002 0 0 63 63")  # spaces, not tabs
    with pytest.raises(ValueError, match=r"val_annotations.txt:3: expected 'file<TAB>wnid"):
        list_tinyimagenet(root, "val")
    _edit_annotations(root, 3, "val_2.JPEG\tn00000002\t0\t0\tsixty\t63")
    with pytest.raises(ValueError, match=r"val_annotations.txt:3:"):
        list_tinyimagenet(root, "val")


def test_annotation_wnid_outside_wnids(demo_copy):
    root = demo_copy(TINY)
    _edit_annotations(root, 2, "val_1.JPEG\tn12345678\t0\t0\t63\t63")
    with pytest.raises(ValueError, match=r"val_annotations.txt:2: wnid 'n12345678' is not in"):
        list_tinyimagenet(root, "val")


def test_annotated_image_missing_and_unlabelled_image(demo_copy):
    root = demo_copy(TINY)
    images = os.path.join(root, "val", "images")
    os.rename(os.path.join(images, "val_0.JPEG"), os.path.join(images, "extra.JPEG"))
    with pytest.raises(FileNotFoundError, match=r"val_annotations.txt:1: image .*val_0.JPEG not found"):
        list_tinyimagenet(root, "val")
    shutil.copy(os.path.join(images, "extra.JPEG"), os.path.join(images, "val_0.JPEG"))
    with pytest.raises(ValueError, match=r"extra.JPEG has no line in"):
        list_tinyimagenet(root, "val")
