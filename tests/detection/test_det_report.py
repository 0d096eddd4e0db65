"""tools/voc_report.py on fake run folders: the table, mean ± std, the files, the errors."""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics

import pytest

from salfmix.errors import DetectionSetupError


def _fake_run(
    root,
    name,
    method=None,
    seed=0,
    ap=(40.0, 70.0, 41.0),
    pretrain=None,
    config_method=None,
    iteration=24000,
    protocol=None,
):
    run = root / name
    run.mkdir()
    results = {
        "iteration": iteration,
        "max_iter": 24000,
        "datasets": {
            "voc_2007_test": {
                "AP": ap[0],
                "AP50": ap[1],
                "AP75": ap[2],
                "per_class_AP50": {"cat": ap[1] + 1, "dog": ap[1] - 1},
            }
        },
    }
    (run / "eval_results.json").write_text(json.dumps(results))
    if method is not None:
        info = {"method": method, "seed": seed, **({"protocol": protocol} if protocol else {})}
        (run / "run_info.json").write_text(json.dumps(info))
    if config_method is not None:
        (run / "config.yaml").write_text(f"SALFMIX:\n  METHOD: {config_method}\nSEED: {seed}\n")
    if pretrain is not None:
        (run / "pretrain_metrics.json").write_text(json.dumps({"top1_err": pretrain[0], "top5_err": pretrain[1]}))
    return str(run)


def test_report_groups_seeds_and_writes_every_file(load_detection_tool, tmp_path, capsys) -> None:
    runs = [
        _fake_run(tmp_path, "base_s0", "baseline", 0, (37.0, 65.8, 36.6), (40.0, 18.0)),
        _fake_run(tmp_path, "v3_s0", "hybridmix_v3", 0, (40.5, 70.1, 40.4), (37.0, 15.0)),
        _fake_run(tmp_path, "v3_s1", "hybridmix_v3", 1, (41.0, 70.5, 40.8), (37.2, 15.4)),
        _fake_run(tmp_path, "v3_s2", "hybridmix_v3", 2, (40.8, 70.6, 40.7)),
        _fake_run(tmp_path, "cutmix_cfg", None, 5, (39.7, 69.0, 39.9), config_method="cutmix"),
        _fake_run(tmp_path, "my_run", None, 0, (30.0, 60.0, 30.0)),
    ]
    tool = load_detection_tool("voc_report")
    paths = tool.main(
        argparse.Namespace(run_dirs=runs, out=str(tmp_path / "report"), dataset=None, note=None, allow_incomplete=False)
    )
    for ext in ("md", "csv", "json", "png"):
        assert os.path.getsize(paths[ext]) > 0
    with open(paths["json"]) as f:
        report = json.load(f)
    methods = {m["method"]: m for m in report["methods"]}
    assert [m["method"] for m in report["methods"]] == ["baseline", "hybridmix_v3", "cutmix", "my_run"]
    v3 = methods["hybridmix_v3"]
    assert v3["runs"] == 3 and v3["seeds"] == [0, 1, 2]
    assert v3["AP50"] == pytest.approx(statistics.mean([70.1, 70.5, 70.6]))
    assert v3["AP50_std"] == pytest.approx(statistics.stdev([70.1, 70.5, 70.6]))
    assert v3["top1_err"] == pytest.approx(37.1)  # the two runs that have pretraining metrics
    assert v3["per_class_AP50"]["cat"] == pytest.approx(v3["AP50"] + 1)
    assert v3["paper"] == {"AP": 40.78, "AP50": 70.38, "AP75": 40.64}
    assert methods["baseline"]["runs"] == 1 and methods["baseline"]["AP_std"] is None
    assert methods["my_run"]["paper"] is None  # named after its folder
    for m in report["methods"]:
        assert {"method", "AP", "AP50", "AP75", "runs"} <= set(m)

    md = open(paths["md"]).read()
    assert f"| hybridmix_v3 | 3 | {v3['AP']:.2f} ± {v3['AP_std']:.2f} |" in md
    assert "| baseline | 1 | 37.00 | 65.80 | 36.60 | 40.00 | 18.00 | 37.04 / 65.86 / 36.69 |" in md
    rows = list(csv.DictReader(open(paths["csv"])))
    assert rows[1]["method"] == "hybridmix_v3" and float(rows[1]["AP75"]) == pytest.approx(v3["AP75"], abs=1e-4)
    assert rows[3]["top1_err"] == ""  # unknown for my_run
    assert "hybridmix_v3" in capsys.readouterr().out


def test_report_errors_name_the_folder(load_detection_tool, tmp_path) -> None:
    good = _fake_run(tmp_path, "good", "cutmix")
    (tmp_path / "unfinished").mkdir()
    tool = load_detection_tool("voc_report")
    with pytest.raises(DetectionSetupError, match=r"unfinished: no evaluation results \(eval_results\.json\)"):
        tool.main(
            argparse.Namespace(
                run_dirs=[good, str(tmp_path / "unfinished")],
                out=str(tmp_path / "r"),
                dataset=None,
                note=None,
                allow_incomplete=False,
            )
        )
    with pytest.raises(DetectionSetupError, match="run folder not found"):
        tool.main(
            argparse.Namespace(
                run_dirs=[str(tmp_path / "nope")],
                out=str(tmp_path / "r"),
                dataset=None,
                note=None,
                allow_incomplete=False,
            )
        )
    with pytest.raises(DetectionSetupError, match="no results for voc_2012_test"):
        tool.main(
            argparse.Namespace(
                run_dirs=[good], out=str(tmp_path / "r"), dataset="voc_2012_test", note=None, allow_incomplete=False
            )
        )
    assert not (tmp_path / "r").exists()


def test_an_unfinished_run_is_never_averaged_with_finished_ones(load_detection_tool, tmp_path, capsys) -> None:
    """A run killed after a periodic evaluation is refused; --allow-incomplete shows it in a row
    of its own, never averaged with the finished seeds of its method."""
    done = _fake_run(tmp_path, "done", "cutmix", seed=0)
    half = _fake_run(tmp_path, "half", "cutmix", seed=1, iteration=5000)
    tool = load_detection_tool("voc_report")
    with pytest.raises(DetectionSetupError, match=r"half: its results are not its finished model's"):
        tool.main(tool.get_parser().parse_args([done, half, "--out", str(tmp_path / "r")]))
    paths = tool.main(tool.get_parser().parse_args([done, half, "--out", str(tmp_path / "r"), "--allow-incomplete"]))
    rows = {m["method"]: m for m in json.load(open(paths["json"]))["methods"]}
    assert rows["cutmix"]["runs"] == 1 and rows["cutmix (incomplete)"]["runs"] == 1
    assert "(incomplete)" in open(paths["md"]).read() and "warning:" in capsys.readouterr().err


def test_evaluation_of_other_weights_is_not_a_runs_result(load_detection_tool, tmp_path) -> None:
    """An --eval-only result in a training run's folder counts only if it evaluated that run's own
    model_final.pth (older results: as run_info.json's eval_weights says)."""
    from detection.report import has_final_results

    run = _fake_run(tmp_path, "run", "cutmix", iteration=None)
    (tmp_path / "run" / "run.json").write_text(json.dumps({"stage": "detection", "status": "finished"}))
    (tmp_path / "run" / "model_final.pth").write_bytes(b"final")
    (tmp_path / "other.pth").write_bytes(b"other")
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    for weights, final in ((str(tmp_path / "other.pth"), False), (str(tmp_path / "run" / "model_final.pth"), True)):
        (tmp_path / "run" / "eval_results.json").write_text(json.dumps({**results, "weights": weights}))
        assert has_final_results(run) is final
    (tmp_path / "run" / "eval_results.json").write_text(json.dumps(results))  # no record of the weights
    assert not has_final_results(run)


def test_runs_of_one_row_share_their_recipe(load_detection_tool, tmp_path) -> None:
    a = _fake_run(tmp_path, "a", "cutmix", seed=0, config_method="cutmix")
    b = _fake_run(tmp_path, "b", "cutmix", seed=1, config_method="cutmix")
    with open(os.path.join(b, "config.yaml"), "a") as f:
        f.write("SOLVER:\n  BASE_LR: 0.5\n")
    tool = load_detection_tool("voc_report")
    with pytest.raises(DetectionSetupError, match=r"cutmix: SOLVER.BASE_LR is '<absent>' in .*a but 0.5 in .*b"):
        tool.main(tool.get_parser().parse_args([a, b, "--out", str(tmp_path / "r")]))


def test_a_report_folder_among_the_runs_is_left_out(load_detection_tool, tmp_path, capsys) -> None:
    """``voc_report.py out/* --out out/report`` a second time: the glob now matches the report."""
    runs = [_fake_run(tmp_path, "a", "cutmix", seed=0), _fake_run(tmp_path, "b", "cutmix", seed=1)]
    tool = load_detection_tool("voc_report")
    out = str(tmp_path / "report")
    first = json.load(open(tool.main(tool.get_parser().parse_args(runs + ["--out", out]))["json"]))
    second = tool.main(tool.get_parser().parse_args(runs + [out, "--out", out]))
    assert json.load(open(second["json"])) == first
    assert "a report folder, not a run: left out" in capsys.readouterr().err


def test_note_goes_in_every_output(load_detection_tool, tmp_path, capsys) -> None:
    run = _fake_run(tmp_path, "base_s0", "baseline", 0)
    tool = load_detection_tool("voc_report")
    note = "Generated data: not the real VOC"
    paths = tool.main(tool.get_parser().parse_args([run, "--out", str(tmp_path / "r"), "--note", note]))
    with open(paths["json"]) as f:
        assert json.load(f)["note"] == note
    with open(paths["md"]) as f:
        assert f.read().splitlines()[2] == f"**{note}**"
    assert note in capsys.readouterr().out


PAPER = "R50-C4 FrozenBN freeze_at 2, batch 8, lr 0.02, 24000 iter (steps 18000, 22000)"
SYNCBN = "R50-C4+norm naiveSyncBN freeze_at 0 precise-BN, batch 8, lr 0.02, 24000 iter (steps 18000, 22000)"


def test_runs_of_different_protocols_are_not_averaged(load_detection_tool, tmp_path) -> None:
    runs = [
        _fake_run(tmp_path, "v3_s0", "hybridmix_v3", 0, protocol=PAPER),
        _fake_run(tmp_path, "v3_s1", "hybridmix_v3", 1, protocol=SYNCBN),
    ]
    tool = load_detection_tool("voc_report")
    with pytest.raises(DetectionSetupError) as err:
        tool.main(tool.get_parser().parse_args(runs + ["--out", str(tmp_path / "r")]))
    message = str(err.value)
    assert "\n" not in message and message.startswith("hybridmix_v3: runs of different protocols cannot be averaged")
    assert runs[0] in message and runs[1] in message and PAPER in message and SYNCBN in message
    assert not (tmp_path / "r").exists()


def test_protocol_is_named_once_or_per_row(load_detection_tool, tmp_path, capsys) -> None:
    tool = load_detection_tool("voc_report")
    same = [_fake_run(tmp_path, "a", "baseline", protocol=PAPER), _fake_run(tmp_path, "b", "cutmix", protocol=PAPER)]
    paths = tool.main(tool.get_parser().parse_args(same + ["--out", str(tmp_path / "r1")]))
    md = open(paths["md"]).read()
    assert f"Protocol: {PAPER}." in md and "| protocol |" not in md
    assert [row["protocol"] for row in csv.DictReader(open(paths["csv"]))] == [PAPER, PAPER]
    assert "different protocols" not in capsys.readouterr().err

    mixed = same + [_fake_run(tmp_path, "c", "hybridmix_v3", protocol=SYNCBN)]
    paths = tool.main(tool.get_parser().parse_args(mixed + ["--out", str(tmp_path / "r2")]))
    md = open(paths["md"]).read()
    assert "Protocol:" not in md and "different protocols" in md
    assert [line for line in md.splitlines() if line.startswith("| hybridmix_v3 |")][0].endswith(f"| {SYNCBN} |")
    assert json.load(open(paths["json"]))["methods"][0]["protocol"] == PAPER
    assert "warning: the rows were fine-tuned under 2 different protocols" in capsys.readouterr().err


def test_protocol_from_the_saved_config_as_rescaled(load_detection_tool, tmp_path) -> None:
    from pathlib import Path

    from detection.config import load_config

    config = Path(__file__).resolve().parents[2] / "configs" / "detection" / "voc0712_faster_rcnn_R_50_C4_24k.yaml"
    runs = []
    for gpus in (1, 4):
        run = Path(_fake_run(tmp_path, f"g{gpus}", None, 0))
        (run / "config.yaml").write_text(load_config(str(config)).dump())  # as Detectron2 saves it
        (run / "run_info.json").write_text(json.dumps({"method": f"none_{gpus}gpu", "seed": 0, "world_size": gpus}))
        runs.append(str(run))
    tool = load_detection_tool("voc_report")
    report = json.load(open(tool.main(tool.get_parser().parse_args(runs + ["--out", str(tmp_path / "r")]))["json"]))
    assert [m["protocol"] for m in report["methods"]] == [
        "R50-C4 FrozenBN freeze_at 2, batch 2, lr 0.005, 96000 iter (steps 72000, 88000)",
        PAPER,
    ]
