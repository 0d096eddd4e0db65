"""runs.report: what both stages' reports share (the tools' use of it: tests/tools/test_report_tools.py)."""
from __future__ import annotations

import json
import os
import random
import statistics

import pytest

from runs import report
from runs.report import (ReportError, csv_text, format_mean_std, markdown_table, mean_std, read_json, read_yaml,
                         unique_run_dirs, write_report_files)


def test_mean_and_sample_std_leave_out_missing_values() -> None:
    stats = mean_std([1.0, None, 2.0, float("nan"), 6.0])
    assert stats["mean"] == pytest.approx(3.0) and stats["std"] == pytest.approx(statistics.stdev([1.0, 2.0, 6.0]))
    assert mean_std([4.0]) == {"mean": 4.0, "std": None}
    assert mean_std([None, float("inf")]) == {"mean": None, "std": None}
    assert (format_mean_std(12.0, 2.0), format_mean_std(7.0, None), format_mean_std(None, None)) == \
        ("12.00 ± 2.00", "7.00", "-")


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
    paths = write_report_files(str(tmp_path / "r"), "# t\n", "a\n", {"x": float("nan"), "y": [1.0]},
                               lambda path: open(path, "wb").write(b"png"), png_name="chart.png")
    assert json.load(open(paths["json"])) == {"x": None, "y": [1.0]}
    assert sorted(os.listdir(tmp_path / "r")) == ["chart.png", "report.csv", "report.json", "report.md"]


def test_welch_test_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for n_a, n_b in [(2, 2), (3, 3), (5, 3), (3, 5), (10, 4)]:
        a = [rng.gauss(0.0, 1.0) for _ in range(n_a)]
        b = [rng.gauss(0.7, 2.0) for _ in range(n_b)]
        ours = report.welch_test(a, b)
        ref = stats.ttest_ind(a, b, equal_var=False)
        assert ours["t"] == pytest.approx(ref.statistic, rel=1e-9)
        assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
    for t, df in [(0.0, 3.0), (2.776, 4.0), (12.7, 1.0), (40.0, 2.5)]:
        assert report.student_t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-7, abs=1e-14)


def test_welch_test_edge_cases() -> None:
    assert report.welch_test([1.0], [2.0, 3.0])["p"] is None
    assert report.welch_test([1.0, 1.0], [1.0, 1.0])["p"] == 1.0
    assert report.welch_test([1.0, 1.0], [2.0, 2.0])["p"] == 0.0
