"""What the reports of both stages share: the list of run folders, reading their JSON / YAML
files, mean ± sample standard deviation, Markdown and CSV tables, and writing the report files.

``pretrain.report`` (classification, the paper's Tables 4/5) and ``detection.report`` (VOC
detection, Table 8) keep what is their own: which files a run folder holds, how rows are
grouped, the columns and the chart. Every reading error names the file and is raised as the
caller's error class (``error=``), a one-line :class:`ReportError` by default.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from salfmix.errors import ReportError
from salfmix.runs.files import atomic_write, atomic_write_json, atomic_write_text

__all__ = [
    "ReportError",
    "csv_text",
    "format_mean_std",
    "markdown_table",
    "mean_std",
    "print_warning",
    "read_json",
    "read_yaml",
    "recipe_conflict",
    "save_figure",
    "unique_run_dirs",
    "welch_test",
    "write_report_files",
]


def print_warning(message: str) -> None:
    """Print ``warning: message`` on stderr (the default ``warn`` of the report readers)."""
    print(f"warning: {message}", file=sys.stderr)


def unique_run_dirs(run_dirs: Sequence[str], warn: Callable[[str], None] | None = print_warning) -> list[str]:
    """``run_dirs`` with every folder once: ``d``, ``d/``, ``./d`` or a link to ``d`` are one folder
    (compared by real path), kept at its first spelling; each dropped duplicate is named in one
    line through ``warn``. Without this a folder given twice would count as two runs."""
    seen: dict[str, str] = {}
    kept: list[str] = []
    for run_dir in run_dirs:
        real = os.path.realpath(run_dir)
        if real in seen:
            if warn is not None:
                same = "" if os.path.normpath(run_dir) == os.path.normpath(seen[real]) else f" ({real})"
                warn(f"{run_dir} is the same folder as {seen[real]}{same}: counted once")
            continue
        seen[real] = run_dir
        kept.append(run_dir)
    return kept


def read_json(path: str, error: type[Exception] = ReportError) -> Any:
    """The JSON content of ``path``; ``error`` naming the file if it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise error(f"{path}: not readable JSON ({' '.join(str(err).split())})") from None


def read_yaml(path: str, error: type[Exception] = ReportError, strict: bool = True) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (empty if there is no such file). A file that does not
    parse, or holds no mapping, raises ``error`` (``strict``) or reads as empty."""
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as err:
        if not strict:
            return {}
        raise error(
            f"{path}: not readable YAML ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None
    if not isinstance(data, dict):
        if not strict:
            return {}
        raise error(f"{path}: expected a mapping of config keys")
    return data


def recipe_conflict(runs: Sequence[tuple[str, Mapping[str, Any]]], ignore: Sequence[str] = ()) -> str | None:
    """The first difference between runs meant to be averaged into one row: ``runs`` are
    ``(run folder, config)`` pairs (nested dicts, e.g. the saved ``config.yaml`` plus what the
    run recorded about its data); keys in ``ignore`` (exact, or ``"A.*"``) may differ. Returns one
    line naming the key, both values and both folders, or None when they agree."""
    from salfmix.runs.manifest import _allowed, flatten

    if len(runs) < 2:
        return None
    first_dir, first = runs[0][0], flatten(dict(runs[0][1]))
    absent = "<absent>"
    for run_dir, config in runs[1:]:
        flat = flatten(dict(config))
        for key in sorted(set(first) | set(flat)):
            if _allowed(key, ignore) or first.get(key, absent) == flat.get(key, absent):
                continue
            return (
                f"{key} is {first.get(key, absent)!r} in {first_dir} but {flat.get(key, absent)!r} in {run_dir}: "
                "runs of another recipe or data are never averaged into one row"
            )
    return None


def mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    """``{"mean", "std"}`` of the finite values (None and NaN are left out): the sample standard
    deviation (ddof = 1), None for a single value; both None when no value is left."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not kept:
        return {"mean": None, "std": None}
    return {"mean": statistics.fmean(kept), "std": statistics.stdev(kept) if len(kept) > 1 else None}


def welch_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """Welch's two-sided t-test of mean(a) - mean(b) (unequal variances, Welch-Satterthwaite
    degrees of freedom; ``scipy.stats.ttest_ind(equal_var=False)``): ``{"diff", "se", "t", "df",
    "p"}``. Needs two values on each side (else only ``diff``); two constant, equal samples give
    p = 1, constant different ones p = 0 (where scipy's statistic is undefined)."""
    from scipy import stats

    a, b = [float(v) for v in a], [float(v) for v in b]
    out: dict[str, float | None] = {
        "diff": statistics.fmean(a) - statistics.fmean(b) if a and b else None,
        "se": None,
        "t": None,
        "df": None,
        "p": None,
    }
    if len(a) < 2 or len(b) < 2:
        return out
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    out["se"] = se
    if se == 0.0:
        out["p"] = 1.0 if out["diff"] == 0.0 else 0.0
        return out
    result = stats.ttest_ind(a, b, equal_var=False)
    out.update(t=float(result.statistic), df=float(result.df), p=float(result.pvalue))
    return out


def format_mean_std(mean: float | None, std: float | None, digits: int = 2) -> str:
    """``12.00 ± 2.00``, ``12.00`` without a spread, ``-`` without a value."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None) -> list[str]:
    """The lines of a Markdown table; ``align`` per column: ``"left"`` (default) or ``"right"``."""
    align = list(align) if align is not None else ["left"] * len(head)
    rule = ["---:" if a == "right" else "---" for a in align]
    return ["| " + " | ".join(str(c) for c in line) + " |" for line in (head, rule, *rows)]


def csv_text(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A CSV table (``\\n`` line ends); None cells are empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _finite(obj: Any) -> Any:
    """``obj`` with NaN / infinite floats as None (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def save_figure(fig: Any, path: str, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG to ``path`` atomically."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))


def write_report_files(
    out_dir: str,
    markdown: str,
    csv_body: str,
    report: Any,
    chart: Callable[[str], None],
    png_name: str = "report.png",
    json_indent: int = 2,
) -> dict[str, str]:
    """Write ``report.md``, ``report.csv``, ``report.json`` (``report``, non-finite numbers as
    null) and the chart (``chart(path)`` writes it) into ``out_dir``, each atomically; returns
    ``{"md", "csv", "json", "png"}`` paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "md": os.path.join(out_dir, "report.md"),
        "csv": os.path.join(out_dir, "report.csv"),
        "json": os.path.join(out_dir, "report.json"),
        "png": os.path.join(out_dir, png_name),
    }
    atomic_write_text(paths["md"], markdown)
    atomic_write_text(paths["csv"], csv_body)
    atomic_write_json(paths["json"], _finite(report), indent=json_indent)
    chart(paths["png"])
    return paths
