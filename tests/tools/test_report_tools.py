"""tools/voc_report.py and tools/cls_report.py: a run folder given twice (d, d/, d/./) is one run."""

from __future__ import annotations

import json
import math


def test_voc_report_counts_a_repeated_folder_once(load_tool, tmp_path, capsys) -> None:
    """tools/voc_report.py d d/ reported one run as two (50.00 ± 0.00)."""
    run = tmp_path / "d"
    run.mkdir()
    results = {"iteration": 10, "max_iter": 10, "datasets": {"voc_2007_test": {"AP": 50.0, "AP50": 70.0, "AP75": 40.0}}}
    (run / "eval_results.json").write_text(json.dumps(results))
    (run / "run_info.json").write_text(json.dumps({"method": "none", "seed": 0}))
    tool = load_tool("voc_report")
    paths = tool.main(tool.get_parser().parse_args([str(run), str(run) + "/", "--out", str(tmp_path / "r")]))
    (entry,) = json.load(open(paths["json"]))["methods"]
    assert entry["runs"] == 1 and entry["AP_std"] is None
    assert "is the same folder as" in capsys.readouterr().err


def test_cls_report_counts_a_repeated_folder_once(load_tool, tmp_path, capsys) -> None:
    run = tmp_path / "none" / "seed0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("MIX:\n  METHOD: none\nSEED: 0\nSOLVER:\n  MAX_EPOCHS: 1\n")
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "top1_err": 10.0, "top5_err": 1.0}) + "\n")
    tool = load_tool("cls_report")
    argv = [str(run), f"{tmp_path}/none/./seed0", "--out", str(tmp_path / "r")]
    paths = tool.main(tool.get_parser().parse_args(argv))
    (row,) = json.load(open(paths["json"]))["rows"]
    assert row["n"] == 1 and math.isclose(row["top1_mean"], 10.0)
    assert "counted once" in capsys.readouterr().err


def _cls_run(path, method: str, seed: int, top1: float, saliency: str = "fresh") -> str:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        f"MIX:\n  METHOD: {method}\n  SALIENCY: {saliency}\nSEED: {seed}\nSOLVER:\n  MAX_EPOCHS: 1\n"
    )
    (path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "top1_err": top1, "top5_err": 1.0}) + "\n")
    # run_info.json as the study runner writes it: its tag does not say which saliency source ran
    (path / "run_info.json").write_text(json.dumps({"tag": method, "method": method, "seed": seed, "r": 0.3}))
    return str(path)


def test_cls_report_keeps_cached_saliency_runs_apart_and_compares_rows(load_tool, tmp_path, capsys) -> None:
    """Fresh and cached runs of one method are two experiments: they were one row (or refused
    as duplicate seeds); --compare adds Welch's test of two rows."""
    fresh = [_cls_run(tmp_path / "f" / f"seed{s}", "salfmix", s, v) for s, v in enumerate([4.0, 4.4, 4.2])]
    cached = [_cls_run(tmp_path / "c" / f"seed{s}", "salfmix", s, v, "cached") for s, v in enumerate([5.0, 5.6, 5.1])]
    tool = load_tool("cls_report")
    argv = [*fresh, *cached, "--out", str(tmp_path / "r"), "--compare", "salfmix", "salfmix+cached"]
    paths = tool.main(tool.get_parser().parse_args(argv))
    report = json.load(open(paths["json"]))
    assert [row["label"] for row in report["rows"]] == ["salfmix", "salfmix+cached"]
    (comp,) = report["comparisons"]
    assert math.isclose(comp["diff"], 4.2 - (5.0 + 5.6 + 5.1) / 3)
    assert 0 < comp["p"] < 0.05 and comp["n_a"] == comp["n_b"] == 3
    assert "| salfmix − salfmix+cached | 3 + 3 |" in open(paths["md"]).read()
    capsys.readouterr()


def test_cls_report_refuses_a_comparison_of_a_missing_row(load_tool, tmp_path) -> None:
    run = _cls_run(tmp_path / "seed0", "none", 0, 10.0)
    tool = load_tool("cls_report")
    argv = [run, "--out", str(tmp_path / "r"), "--compare", "none", "cutmix"]
    try:
        tool.main(tool.get_parser().parse_args(argv))
    except SystemExit as err:
        assert "no row named 'cutmix'" in str(err)
    else:
        raise AssertionError("a comparison of a missing row was accepted")
    assert not (tmp_path / "r").exists()
