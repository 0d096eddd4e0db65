"""pretrain.report / pretrain.report_format: the training side of a run beside its test error."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import pytest

from pretrain.report import ReportError, build_report
from pretrain.report_format import to_csv, to_markdown


def _run(path, method: str, seed: int, top1: float, **train: float) -> str:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"MIX:\n  METHOD: {method}\nSEED: {seed}\nSOLVER:\n  MAX_EPOCHS: 2\n")
    records = [{"epoch": 1, "train_loss": 9.0}, {"epoch": 2, "top1_err": top1, "top5_err": 1.0, **train}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_training_loss_and_error_are_averaged_over_seeds_and_shown(tmp_path) -> None:
    clean_err, clean_loss, mixed = [0.0, 0.1, 0.2], [0.004, 0.003, 0.005], [0.02, 0.03, 0.01]
    runs = [
        _run(tmp_path / f"none{s}", "none", s, 15.0 + s, train_top1_err=err, train_eval_loss=loss, train_loss=m)
        for s, (err, loss, m) in enumerate(zip(clean_err, clean_loss, mixed))
    ]
    report = build_report(runs, warn=None)
    (row,) = report["rows"]
    assert math.isclose(row["train_top1_err_mean"], statistics.fmean(clean_err))
    assert math.isclose(row["train_top1_err_std"], statistics.stdev(clean_err))
    assert math.isclose(row["train_eval_loss_mean"], statistics.fmean(clean_loss))
    assert math.isclose(row["train_loss_mean"], statistics.fmean(mixed))  # the LAST record's, not epoch 1's
    text = to_markdown(report)
    assert "| train err (clean) | train loss (clean) | train loss (optimised) |" in text
    assert "| 0.10 ± 0.10 | 0.004 ± 0.001 | 0.020 ± 0.010 |" in text
    (line,) = csv.DictReader(io.StringIO(to_csv(report)))
    assert math.isclose(float(line["train_eval_loss_mean"]), 0.004)


def test_a_row_gets_a_training_value_only_when_every_seed_has_it(tmp_path) -> None:
    """A mean over some of the seeds is not the row's: a seed without TEST.TRAIN_SET leaves it out."""
    runs = [
        _run(tmp_path / "a", "none", 0, 15.0, train_top1_err=0.0, train_loss=0.02),
        _run(tmp_path / "b", "none", 1, 16.0, train_loss=0.03),
        _run(tmp_path / "c", "cutmix", 0, 14.0),
    ]
    report = build_report(runs, warn=None)
    none, cutmix = report["rows"]
    assert none["train_top1_err_mean"] is None and math.isclose(none["train_loss_mean"], 0.025)
    assert cutmix["train_loss_mean"] is None
    text = to_markdown(report)
    assert "train err (clean)" not in text  # no row has it: no column
    assert "| 0.025 ± 0.007 |" in text and "| - |" in text


def test_no_training_side_keeps_the_test_table(tmp_path) -> None:
    report = build_report([_run(tmp_path / "a", "none", 0, 15.0)], warn=None)
    assert "train" not in to_markdown(report).split("\n")[4]  # the header row


def test_a_training_value_that_is_not_a_number_names_the_file(tmp_path) -> None:
    run = _run(tmp_path / "a", "none", 0, 15.0, train_loss=0.1)
    text = (tmp_path / "a" / "metrics.jsonl").read_text().replace("0.1", '"nan?"')
    (tmp_path / "a" / "metrics.jsonl").write_text(text)
    with pytest.raises(ReportError, match=r"a/metrics.jsonl: the last record's 'train_loss' is 'nan\?'"):
        build_report([run], warn=None)
