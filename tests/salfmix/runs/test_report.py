"""salfmix.runs.report: what both stages' reports share (the tools' use of it: tests/tools/test_report_tools.py)."""

from __future__ import annotations

import json
import math
import os
import statistics

import pytest

from salfmix.runs import report
from salfmix.runs.report import (
    ReportError,
    csv_text,
    format_mean_std,
    markdown_table,
    mean_std,
    read_json,
    read_yaml,
    unique_run_dirs,
    write_report_files,
)


def test_mean_and_sample_std_leave_out_missing_values() -> None:
    stats = mean_std([1.0, None, 2.0, float("nan"), 6.0])
    assert stats["mean"] == pytest.approx(3.0) and stats["std"] == pytest.approx(statistics.stdev([1.0, 2.0, 6.0]))
    assert mean_std([4.0]) == {"mean": 4.0, "std": None}
    assert mean_std([None, float("inf")]) == {"mean": None, "std": None}
    assert (format_mean_std(12.0, 2.0), format_mean_std(7.0, None), format_mean_std(None, None)) == (
        "12.00 ± 2.00",
        "7.00",
        "-",
    )


def test_tables() -> None:
    assert markdown_table(["a", "b"], [[1, "x"]], ["left", "right"]) == ["| a | b |", "| --- | ---: |", "| 1 | x |"]
    assert csv_text(["a", "b"], [[1.5, None], ["x,y", 2]]) == 'a,b\n1.5,\n"x,y",2\n'


def test_readers_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReportError, match=rf"^{bad}: not readable JSON"):
        read_json(str(bad))
    with pytest.raises(KeyError, match="bad.json"):
        read_json(str(bad), error=KeyError)
    yml = tmp_path / "c.yaml"
    yml.write_text("- a list\n")
    with pytest.raises(ReportError, match="expected a mapping"):
        read_yaml(str(yml))
    assert read_yaml(str(yml), strict=False) == {} and read_yaml(str(tmp_path / "absent.yaml")) == {}


def test_a_folder_given_twice_is_counted_once(tmp_path) -> None:
    run = tmp_path / "d"
    run.mkdir()
    os.symlink(run, tmp_path / "link")
    warnings = []
    kept = unique_run_dirs([str(run), str(run) + "/", str(tmp_path / "link"), str(tmp_path / "other")], warnings.append)
    assert kept == [str(run), str(tmp_path / "other")]
    assert len(warnings) == 2 and warnings[0] == f"{run}/ is the same folder as {run}: counted once"
    assert str(run) in warnings[1] and "link" in warnings[1]


def test_report_files_are_written_with_null_for_nan(tmp_path) -> None:
    paths = write_report_files(
        str(tmp_path / "r"),
        "# t\n",
        "a\n",
        {"x": float("nan"), "y": [1.0]},
        lambda path: open(path, "wb").write(b"png"),
        png_name="chart.png",
    )
    assert json.load(open(paths["json"])) == {"x": None, "y": [1.0]}
    assert sorted(os.listdir(tmp_path / "r")) == ["chart.png", "report.csv", "report.json", "report.md"]


def test_welch_test_on_a_published_example() -> None:
    """Welch's t-test, example 1 of its Wikipedia article (two samples of 15): t = -2.46,
    df = 24.99, p = 0.021; the standard error and df by the Welch-Satterthwaite formula."""
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    result = report.welch_test(a, b)
    va, vb = statistics.variance(a) / 15, statistics.variance(b) / 15
    assert result["diff"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    assert result["se"] == pytest.approx(math.sqrt(va + vb)) and result["t"] == pytest.approx(-2.46, abs=5e-3)
    assert result["df"] == pytest.approx((va + vb) ** 2 / (va**2 / 14 + vb**2 / 14)) == pytest.approx(24.99, abs=5e-3)
    assert result["p"] == pytest.approx(0.021, abs=5e-4)


def test_welch_test_edge_cases() -> None:
    assert report.welch_test([1.0], [2.0, 3.0])["p"] is None
    assert report.welch_test([1.0, 1.0], [1.0, 1.0])["p"] == 1.0
    assert report.welch_test([1.0, 1.0], [2.0, 2.0])["p"] == 0.0
