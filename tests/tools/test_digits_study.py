"""The digits study tools: make_digits_dataset, cls_report and run_study through get_parser() and main()."""

import csv
import json
import os
import statistics

import numpy as np
import pytest

from pretrain.data.cifar import read_cifar, write_cifar


# --------------------------------------------------------------------------------------------
# make_digits_dataset
def test_digits_writer_reads_back_as_cifar10(load_tool, tmp_path, capsys):
    pytest.importorskip("sklearn")
    from pretrain.data.cache import load_dataset

    tool = load_tool("make_digits_dataset")
    summary = tool.main(tool.get_parser().parse_args(["--out", str(tmp_path)]))
    folder = tmp_path / "cifar-10-batches-py"
    assert summary["folder"] == str(folder) and (folder / "DIGITS.txt").read_text().startswith("UCI")
    assert "real data" in capsys.readouterr().out
    train = load_dataset("cifar10", str(folder), "train", cache_dir=str(tmp_path / "cache"), progress=False)
    test = load_dataset("cifar10", str(folder), "test", cache_dir=str(tmp_path / "cache"), progress=False)
    assert len(train) + len(test) == 1797 and train.images.shape[1:] == (32, 32, 3)
    assert train.classes == [f"digit_{k}" for k in range(10)]
    train_counts = np.bincount(train.labels, minlength=10)
    test_counts = np.bincount(test.labels, minlength=10)
    # Stratified 50/50: per class, floor(n/2) to train and the rest to test.
    assert (test_counts - train_counts >= 0).all() and (test_counts - train_counts <= 1).all()
    assert (len(train), len(test)) == (896, 901)
    # Greyscale digits in three identical channels, with ink in the middle.
    images = np.asarray(train.images)
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 0] == images[..., 2]).all()
    assert images.max() == 255 and images[:, 12:20, 12:20].mean() > images[:, :2].mean()
    split = json.loads((folder / "split.json").read_text())
    assert not set(split["train_indices"]) & set(split["test_indices"])


def test_digits_low_data_subset_keeps_test_whole(load_tool, tmp_path):
    pytest.importorskip("sklearn")
    tool = load_tool("make_digits_dataset")
    tool.main(tool.get_parser().parse_args(["--out", str(tmp_path / "full")]))
    tool.main(tool.get_parser().parse_args(["--out", str(tmp_path / "k5"), "--train-per-class", "5"]))
    x_full, y_full, _ = read_cifar(str(tmp_path / "full"), "train")
    x5, y5, _ = read_cifar(str(tmp_path / "k5"), "train")
    assert np.bincount(y5).tolist() == [5] * 10
    full_rows = {row.tobytes() for row in x_full}
    assert all(row.tobytes() in full_rows for row in x5)  # a subset of the training half
    for split in ("test",):
        a, b = read_cifar(str(tmp_path / "full"), split), read_cifar(str(tmp_path / "k5"), split)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(SystemExit, match="train_per_class=500"):
        tool.main(tool.get_parser().parse_args(["--out", str(tmp_path / "bad"), "--train-per-class", "500"]))


# --------------------------------------------------------------------------------------------
# cls_report on hand-made run folders
def _fake_run(folder, method, seed, top1, top5, epochs=3, r=0.3, last_epoch=None, tag=None, lr=0.05, data=None):
    os.makedirs(folder)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(
            f"MIX:\n  METHOD: {method}\n  R: {r}\nSEED: {seed}\nOUTPUT_DIR: {folder}\n"
            f"SOLVER:\n  MAX_EPOCHS: {epochs}\n  BASE_LR: {lr}\n"
        )
    if data is not None:
        with open(os.path.join(folder, "run.json"), "w") as f:
            json.dump({"stage": "pretrain", "status": "finished", "method": method, "data": data}, f)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        last = epochs if last_epoch is None else last_epoch
        for epoch in range(1, last):
            f.write(json.dumps({"epoch": epoch, "train_loss": 1.0}) + "\n")
        f.write(json.dumps({"epoch": last, "train_loss": 0.5, "top1_err": top1, "top5_err": top5}) + "\n")
    if tag:
        with open(os.path.join(folder, "run_info.json"), "w") as f:
            json.dump({"tag": tag, "method": method, "seed": seed, "r": r, "epochs": epochs}, f)
    return str(folder)


def test_cls_report_mean_and_sample_std(load_tool, tmp_path, capsys):
    values = {"none": [(10.0, 1.0), (12.0, 2.0), (14.0, 3.0)], "salfmix": [(8.0, 1.0), (9.0, 1.5)]}
    dirs = [
        _fake_run(tmp_path / m / f"seed{s}", m, s, t1, t5)
        for m, vals in values.items()
        for s, (t1, t5) in enumerate(vals)
    ]
    dirs.append(_fake_run(tmp_path / "salfmix_r0.5" / "seed0", "salfmix", 0, 7.0, 0.5, r=0.5))
    dirs.append(_fake_run(tmp_path / "tagged" / "seed0", "salfmix", 0, 6.0, 0.5, r=0.7, tag="my_tag"))
    tool = load_tool("cls_report")
    paths = tool.main(tool.get_parser().parse_args([*dirs, "--out", str(tmp_path / "rep")]))
    report = json.loads(open(paths["json"]).read())
    rows = {row["label"]: row for row in report["rows"]}
    assert [row["label"] for row in report["rows"]] == ["none", "salfmix", "salfmix_r0.5", "my_tag"]
    assert rows["none"]["top1_mean"] == pytest.approx(12.0) and rows["none"]["top1_std"] == pytest.approx(2.0)
    assert rows["none"]["top5_std"] == pytest.approx(statistics.stdev([1.0, 2.0, 3.0]))
    assert rows["salfmix"]["top1_mean"] == pytest.approx(8.5)
    assert rows["salfmix"]["top1_std"] == pytest.approx(statistics.stdev([8.0, 9.0]))
    assert rows["salfmix"]["delta_top1"] == pytest.approx(-3.5)
    assert rows["salfmix"]["delta_se"] == pytest.approx((0.5 / 2 + 4.0 / 3) ** 0.5)
    assert rows["salfmix_r0.5"]["n"] == 1 and rows["salfmix_r0.5"]["top1_std"] is None
    md = open(paths["md"]).read()
    assert "| none | 3 | 12.00 ± 2.00 |" in md and "| salfmix_r0.5 | 1 | 7.00 |" in md
    with open(paths["csv"]) as f:
        assert [r["label"] for r in csv.DictReader(f)] == ["none", "salfmix", "salfmix_r0.5", "my_tag"]
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def test_cls_report_refuses_bad_runs(load_tool, tmp_path):
    tool = load_tool("cls_report")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match=r"empty: no metrics.jsonl"):
        tool.main(tool.get_parser().parse_args([str(empty), "--out", str(tmp_path / "o")]))
    short = _fake_run(tmp_path / "short", "none", 0, 10.0, 1.0, epochs=5, last_epoch=2)
    with pytest.raises(SystemExit, match=r"short: incomplete \(last epoch 2 of 5\)"):
        tool.main(tool.get_parser().parse_args([short, "--out", str(tmp_path / "o")]))
    tool.main(tool.get_parser().parse_args([short, "--out", str(tmp_path / "o"), "--allow-incomplete"]))
    a = _fake_run(tmp_path / "a", "none", 0, 10.0, 1.0)
    b = _fake_run(tmp_path / "b", "none", 0, 11.0, 1.0)
    with pytest.raises(SystemExit, match="are both none seed 0"):
        tool.main(tool.get_parser().parse_args([a, b, "--out", str(tmp_path / "o")]))
    # one row never averages runs of another recipe or data: the key is named
    c = _fake_run(tmp_path / "c", "none", 1, 11.0, 1.0, lr=0.1)
    with pytest.raises(SystemExit, match=r"none: config.SOLVER.BASE_LR is 0.05 in .*a but 0.1 in .*c"):
        tool.main(tool.get_parser().parse_args([a, c, "--out", str(tmp_path / "o")]))
    d = _fake_run(tmp_path / "d", "none", 2, 11.0, 1.0, epochs=5)
    with pytest.raises(SystemExit, match=r"none: config.SOLVER.MAX_EPOCHS is 3 .* but 5 "):
        tool.main(tool.get_parser().parse_args([a, d, "--out", str(tmp_path / "o")]))
    four = {"name": "cifar10", "classes": 4, "train_images": 40, "test_images": 40}
    e = _fake_run(tmp_path / "e", "none", 3, 11.0, 1.0, data=four)
    f = _fake_run(tmp_path / "f", "none", 4, 11.0, 1.0, data={**four, "classes": 10})
    with pytest.raises(SystemExit, match=r"none: data.classes is 4 in .*e but 10 in .*f"):
        tool.main(tool.get_parser().parse_args([e, f, "--out", str(tmp_path / "o")]))
    noeval = tmp_path / "noeval"
    noeval.mkdir()
    (noeval / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 1.0}) + "\n")
    with pytest.raises(SystemExit, match=r"metrics.jsonl: the last record \(epoch 1\) has no 'top1_err'"):
        tool.main(tool.get_parser().parse_args([str(noeval), "--out", str(tmp_path / "o")]))


# --------------------------------------------------------------------------------------------
# run_study
def test_study_plan_adds_ablations(load_tool):
    from salfmix.pipeline.study import Recipe, plan_tags

    tags = plan_tags(["none"], ["saliency", "r"], [0.1, 0.3, 0.5], "salfmix", 0.3)
    assert tags == [
        ("none", "none", 0.3),
        ("salfmix", "salfmix", 0.3),
        ("salfmix_random", "salfmix_random", 0.3),
        ("salfmix_r0.1", "salfmix", 0.1),
        ("salfmix_r0.5", "salfmix", 0.5),
    ]
    assert Recipe(epochs=20).steps() == (10, 15) and Recipe(epochs=1).steps() == ()
    tool = load_tool("run_study")
    with pytest.raises(SystemExit, match="unknown method 'nope'"):
        tool.main(tool.get_parser().parse_args(["--data-root", ".", "--output-root", ".", "--methods", "nope"]))


def _dry_run_tags(tool, capsys, *extra):
    argv = ["--data-root", ".", "--output-root", "/nonexistent/study", "--seeds", "0", "--dry-run", *extra]
    tool.main(tool.get_parser().parse_args(argv))
    lines = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("  todo ")]
    return [os.path.basename(os.path.dirname(path)) for path in lines]


def test_run_study_named_methods_are_exactly_the_runs(load_tool, capsys):
    """--methods names the runs; the ablations' rows (and the r sweep) only when asked for."""
    tool = load_tool("run_study")
    assert _dry_run_tags(tool, capsys, "--methods", "none", "hybridmix_v3") == ["none", "hybridmix_v3"]
    assert _dry_run_tags(tool, capsys, "--methods", "none", "--ablations", "cutout") == [
        "none",
        "cutout",
        "cutout_saliency",
    ]
    everything = _dry_run_tags(tool, capsys)  # no --methods: every method and every ablation, as before
    assert "salfmix_r0.1" in everything and "hybridmix_v3" in everything


def test_run_study_one_base_config_for_every_method(load_tool, capsys, tmp_path):
    """--config-file: one (base) config, each run sets its MIX.METHOD and is checked to train it."""
    from pretrain.config import load_config
    from salfmix.pipeline.study import Recipe, StudyRun, run_opts

    base = "pretrain/Base-FashionMNIST-ResNet20.yaml"
    tool = load_tool("run_study")
    assert _dry_run_tags(tool, capsys, "--methods", "cutmix", "salfmix", "--config-file", base) == ["salfmix", "cutmix"]
    run = StudyRun("cutmix", "cutmix", 0, 0.3, str(tmp_path / "cutmix" / "seed0"))
    cfg = load_config(base, run_opts(run, Recipe(config=base), "."))
    assert cfg.MIX.METHOD == "cutmix" and cfg.MIX.CUTMIX.PROB == 0.5  # the family's CutMix setting
    with pytest.raises(SystemExit, match="--config-file .*nope.yaml: config file not found"):
        tool.main(
            tool.get_parser().parse_args(
                ["--data-root", ".", "--output-root", ".", "--config-file", str(tmp_path / "nope.yaml")]
            )
        )


# One epoch at 16 px, batch 4, mixing from the first epoch: the smallest run that trains and mixes.
TINY_RUN = ["--epochs", "1", "--batch-size", "4", "--input-size", "16", "--start-epoch", "1"]


def _study_argv(tmp_path, methods, n_images: int, n_classes: int, seed: int, *extra: str) -> list[str]:
    """run_study's arguments for ``methods`` (seed 0, no ablations) over a generated CIFAR-10
    folder of ``n_images`` random images, half to train and half to test."""
    images = np.random.default_rng(seed).integers(0, 255, (n_images, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n_images) % n_classes
    half = n_images // 2
    classes = [chr(ord("a") + k) for k in range(n_classes)]
    data = write_cifar(
        str(tmp_path / "data"), "cifar10", images[:half], labels[:half], images[half:], labels[half:], classes
    )
    return ["--data-root", data, "--output-root", str(tmp_path / "study"), "--methods", *methods, "--ablations",
            "--seeds", "0", *extra]  # fmt: skip


@pytest.mark.slow
def test_run_study_tiny_runs_then_skips(load_tool, tmp_path, capsys):
    tool = load_tool("run_study")
    argv = _study_argv(tmp_path, ["none", "salfmix"], 24, 3, 0, *TINY_RUN)
    first = tool.main(tool.get_parser().parse_args(argv))
    assert not first["failed"] and len(first["ran"]) == 2 and not first["skipped"]
    run = tmp_path / "study" / "salfmix" / "seed0"
    info = json.loads((run / "run_info.json").read_text())
    assert info["tag"] == "salfmix" and info["seed"] == 0 and info["wall_s"] >= 0
    assert (run / "model_final.pth").is_file() and not list(run.glob("model_epoch*.pth"))
    assert "MIX.N" in info["opts"] and "16" in info["opts"]
    report = json.loads((tmp_path / "study" / "report" / "report.json").read_text())
    assert [row["label"] for row in report["rows"]] == ["none", "salfmix"]
    second = tool.main(tool.get_parser().parse_args(argv))
    assert not second["ran"] and len(second["skipped"]) == 2
    assert "already done" in capsys.readouterr().out
    # the same folders asked for another recipe: refused before anything runs, naming the keys
    for extra, key in ((["--epochs", "2"], "SOLVER.MAX_EPOCHS"), (["--lr", "0.05"], "SOLVER.BASE_LR")):
        with pytest.raises(SystemExit, match=f"{key}: .* never reused for another recipe"):
            tool.main(tool.get_parser().parse_args(argv + extra))
    assert not list((tmp_path / "study").glob("*/seed1"))


def test_run_study_refuses_a_config_that_trains_another_method(load_tool, tmp_path):
    """A leaf of one method as --config-file would train that method under every tag's name."""
    from leaves import leaf_config

    tool = load_tool("run_study")
    argv = _study_argv(tmp_path, ["none", "cutmix"], 8, 2, 0, "--config-file", leaf_config("cifar10_preact18_none"))
    with pytest.raises(SystemExit, match="cutmix: .*cifar10_preact18_none.yaml trains MIX.METHOD none, not cutmix"):
        tool.main(tool.get_parser().parse_args(argv))
    assert not (tmp_path / "study").exists()


@pytest.mark.slow
def test_run_study_jobs_run_as_child_processes(load_tool, tmp_path):
    tool = load_tool("run_study")
    argv = _study_argv(tmp_path, ["none", "cutout"], 16, 2, 1, *TINY_RUN, "--jobs", "2", "--no-report")
    first = tool.main(tool.get_parser().parse_args(argv))
    assert not first["failed"] and len(first["ran"]) == 2
    for tag in ("none", "cutout"):
        run = tmp_path / "study" / tag / "seed0"
        assert "done:" in (run / "train.log").read_text()
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
        assert json.loads((run / "run_info.json").read_text())["tag"] == tag
    again = tool.main(tool.get_parser().parse_args(argv))
    assert not again["ran"] and len(again["skipped"]) == 2
