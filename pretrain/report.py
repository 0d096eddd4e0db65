"""Compare pretraining runs like the paper's Tables 4/5: one row per method, mean ± std over seeds.

A run folder is an OUTPUT_DIR of salfmix.cli.pretrain. Its result is the LAST record of
``metrics.jsonl`` (the final epoch's ``top1_err`` / ``top5_err``, in percent). Its name and seed
come from ``run_info.json`` (written by salfmix.cli.run_study: ``tag``, ``method``, ``seed``, ``r``)
or else from the saved ``config.yaml`` (``MIX.METHOD``, ``MIX.R``, ``SEED``): methods that take
a patch ratio get ``_r<R>`` appended when R is not the paper's 0.3, and a run whose config says
``MIX.SALIENCY cached`` gets ``+cached``. Runs sharing a name are averaged; the spread is the
sample standard deviation (ddof = 1) over seeds. Chosen pairs of rows are compared with Welch's
two-sided t-test on their per-seed top-1 errors (``compare``).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pretrain.mixing import MIXERS, takes_patch_ratio
from salfmix.runs import report as shared
from salfmix.runs.files import atomic_write_bytes

PAPER_R = 0.3
BASELINE = "none"
CACHED_SUFFIX = "+cached"  # appended to the row name of a run with MIX.SALIENCY cached


class ReportError(shared.ReportError):
    """A run folder that cannot be reported (missing or malformed files)."""


@dataclass
class RunResult:
    """The final-epoch result of one run folder."""

    run_dir: str
    label: str
    method: str
    r: float | None
    seed: int
    epoch: int
    max_epochs: int | None
    top1_err: float
    top5_err: float
    # What the averaging compares: the resolved config (with the defaults for keys added since
    # the run) and the data it recorded in run.json.
    recipe: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def complete(self) -> bool:
        """Whether the last record is the configured last epoch (unknown counts as complete)."""
        return self.max_epochs is None or self.epoch >= self.max_epochs


def _last_record(run_dir: str) -> dict[str, Any]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise ReportError(
            f"{run_dir}: no metrics.jsonl (not a pretraining run folder, or it has not finished an epoch)"
        )
    last = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    last = json.loads(line)
                except ValueError:
                    raise ReportError(f"{path}: line {number} is not JSON") from None
    if not isinstance(last, dict):
        raise ReportError(f"{path}: no epoch records")
    for key in ("epoch", "top1_err", "top5_err"):
        if key not in last:
            raise ReportError(f"{path}: the last record (epoch {last.get('epoch', '?')}) has no {key!r}")
    return last


def label_for(method: str, r: float | None) -> str:
    """The row name of a run without run_info: the method, plus ``_r<R>`` for a non-default ratio."""
    if method in MIXERS and takes_patch_ratio(method) and r is not None and not math.isclose(r, PAPER_R):
        return f"{method}_r{r:g}"
    return method


def read_run(run_dir: str) -> RunResult:
    """Read one run folder; raises ReportError naming the file at fault."""
    if not os.path.isdir(run_dir):
        raise ReportError(f"{run_dir}: not a folder")
    last = _last_record(run_dir)
    cfg = shared.read_yaml(os.path.join(run_dir, "config.yaml"), ReportError)
    info_path = os.path.join(run_dir, "run_info.json")
    info = shared.read_json(info_path, ReportError) if os.path.isfile(info_path) else {}
    if not isinstance(info, dict):
        raise ReportError(f"{info_path}: expected a JSON object")
    mix = cfg.get("MIX") or {}
    method = info.get("method", mix.get("METHOD"))
    if method is None:
        raise ReportError(f"{run_dir}: neither run_info.json nor config.yaml names the method (MIX.METHOD)")
    r = info.get("r", mix.get("R"))
    r = None if r is None else float(r)
    seed = info.get("seed", cfg.get("SEED"))
    if seed is None:
        raise ReportError(f"{run_dir}: neither run_info.json nor config.yaml gives the SEED")
    label = info.get("tag") or label_for(str(method), r)
    if mix.get("SALIENCY") == "cached" and not label.endswith(CACHED_SUFFIX):
        # a cached-saliency run is not the same experiment as a fresh one: never one row
        label += CACHED_SUFFIX
    max_epochs = info.get("epochs", cfg.get("SOLVER", {}).get("MAX_EPOCHS"))
    manifest = (
        shared.read_json(os.path.join(run_dir, "run.json"), ReportError)
        if os.path.isfile(os.path.join(run_dir, "run.json"))
        else {}
    )
    recipe = {"config": _with_defaults(cfg), "data": manifest.get("data") if isinstance(manifest, dict) else None}
    return RunResult(
        run_dir,
        str(label),
        str(method),
        r,
        int(seed),
        int(last["epoch"]),
        None if max_epochs is None else int(max_epochs),
        float(last["top1_err"]),
        float(last["top5_err"]),
        recipe,
    )


# Keys in which runs of one row may differ: the seed, where runs and data are, how they report.
ROW_MAY_DIFFER = (
    "config.SEED",
    "config.OUTPUT_DIR",
    "config.DATA.ROOT",
    "config.DATA.CACHE_DIR",
    "config.TRAIN.PROGRESS",
    "config.TRAIN.EVAL_PERIOD",
    "config.TRAIN.KEEP_CHECKPOINTS",
    "config.TRAIN.CHECKPOINT_PERIOD",
    "config.TRAIN.LOG_PERIOD",
    "config.TRAIN.COMPILE",
    "config.TEST.BATCH_SIZE",
)


def _with_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """The saved config with the current defaults under it: a run from before a key existed reads
    as having the key's default (what its code did)."""
    import yaml

    from pretrain.config import get_cfg_defaults

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    return merge(yaml.safe_load(get_cfg_defaults().dump()), cfg)


def _order(row: dict[str, Any]) -> tuple:
    names = list(MIXERS)
    index = names.index(row["method"]) if row["method"] in names else len(names)
    r = row["r"] if row["r"] is not None else PAPER_R
    # The methods first (MIXERS order, like the paper's tables), then the ablation tags (e.g. r).
    return (0 if row["label"] == row["method"] else 1, index, r, row["label"])


def aggregate(runs: Sequence[RunResult], allow_incomplete: bool = False) -> list[dict[str, Any]]:
    """One row per label: n, seeds, mean and sample std of top-1 / top-5, per-seed values and Δ vs none.

    ``delta_top1`` is the row's mean minus the ``none`` row's mean; ``delta_se`` the standard error
    of that difference, sqrt(s1²/n1 + s2²/n2) (None with fewer than two seeds on either side).
    """
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        if not run.complete and not allow_incomplete:
            raise ReportError(f"{run.run_dir}: incomplete (last epoch {run.epoch} of {run.max_epochs})")
        same = [other for other in groups.get(run.label, []) if other.seed == run.seed]
        if same:
            raise ReportError(f"{same[0].run_dir} and {run.run_dir} are both {run.label} seed {run.seed}")
        groups.setdefault(run.label, []).append(run)
    rows = []
    for label, members in groups.items():
        members = sorted(members, key=lambda m: m.seed)
        top1, top5 = shared.mean_std([m.top1_err for m in members]), shared.mean_std([m.top5_err for m in members])
        methods = {m.method for m in members}
        if len(methods) > 1:
            raise ReportError(
                f"runs named {label} use different methods {sorted(methods)}: {[m.run_dir for m in members]}"
            )
        conflict = shared.recipe_conflict([(m.run_dir, m.recipe) for m in members], ROW_MAY_DIFFER)
        if conflict:
            raise ReportError(f"{label}: {conflict}")
        rows.append(
            {
                "label": label,
                "method": members[0].method,
                "r": members[0].r,
                "n": len(members),
                "seeds": [m.seed for m in members],
                "top1_mean": top1["mean"],
                "top1_std": top1["std"],
                "top5_mean": top5["mean"],
                "top5_std": top5["std"],
                "top1_per_seed": [m.top1_err for m in members],
                "top5_per_seed": [m.top5_err for m in members],
                "run_dirs": [m.run_dir for m in members],
                "complete": all(m.complete for m in members),
            }
        )
    rows.sort(key=_order)
    base = next((row for row in rows if row["label"] == BASELINE), None)
    for row in rows:
        row["delta_top1"] = row["delta_se"] = None
        if base is not None and row is not base:
            row["delta_top1"] = row["top1_mean"] - base["top1_mean"]
            if row["top1_std"] is not None and base["top1_std"] is not None:
                row["delta_se"] = math.sqrt(row["top1_std"] ** 2 / row["n"] + base["top1_std"] ** 2 / base["n"])
    return rows


def compare_rows(rows: Sequence[dict[str, Any]], pairs: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """Welch's two-sided t-test of top-1 error for each ``(a, b)`` pair of row labels:
    ``{"a", "b", "n_a", "n_b", "diff", "se", "t", "df", "p"}`` (diff = mean a - mean b).
    Raises ReportError naming a label that is not a row."""
    by_label = {row["label"]: row for row in rows}
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise ReportError(f"a comparison needs two row names, got {list(pair)}")
        for label in pair:
            if label not in by_label:
                raise ReportError(f"compare {pair[0]} {pair[1]}: no row named {label!r} (rows: {', '.join(by_label)})")
        a, b = by_label[pair[0]], by_label[pair[1]]
        test = shared.welch_test(a["top1_per_seed"], b["top1_per_seed"])
        out.append({"a": pair[0], "b": pair[1], "n_a": a["n"], "n_b": b["n"], **test})
    return out


def build_report(
    run_dirs: Sequence[str],
    allow_incomplete: bool = False,
    title: str = "Top-1 / top-5 error",
    warn: Callable[[str], None] | None = shared.print_warning,
    compare: Sequence[Sequence[str]] = (),
) -> dict[str, Any]:
    """Read every run folder (each once: a folder given twice is named through ``warn`` and
    counted once) and aggregate: ``{"title", "rows", "runs", "comparisons"}``."""
    if not run_dirs:
        raise ReportError("no run folders given")
    runs = [read_run(d) for d in shared.unique_run_dirs(run_dirs, warn)]
    rows = aggregate(runs, allow_incomplete)
    runs_out = [{k: v for k, v in asdict(r).items() if k != "recipe"} for r in runs]
    return {"title": title, "rows": rows, "runs": runs_out, "comparisons": compare_rows(rows, compare)}


def _format_p(p: float | None) -> str:
    """A p-value with three decimals, or in scientific notation below 0.001 (never "0.000")."""
    if p is None:
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _comparison_lines(comparisons: Sequence[dict[str, Any]]) -> list[str]:
    if not comparisons:
        return []
    head = ["comparison (top-1 err)", "seeds", "Δ (a − b)", "\\|Δ\\|/SE", "Welch df", "Welch p (two-sided)"]
    rows = []
    for c in comparisons:
        rows.append(
            [
                f"{c['a']} − {c['b']}",
                f"{c['n_a']} + {c['n_b']}",
                "-" if c["diff"] is None else f"{c['diff']:+.2f}",
                "-" if not c["se"] else f"{abs(c['diff']) / c['se']:.1f}",
                "-" if c["df"] is None else f"{c['df']:.1f}",
                _format_p(c["p"]),
            ]
        )
    return [
        "",
        "Welch's two-sided t-test on the per-seed top-1 errors of two rows:",
        "",
        *shared.markdown_table(head, rows),
    ]


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table (one row per method)."""
    head = ["method", "seeds", "top-1 err", "top-5 err", "Δ top-1 vs none", "\\|Δ\\|/SE", "top-1 per seed"]
    rows = []
    for row in report["rows"]:
        delta = "" if row["delta_top1"] is None else f"{row['delta_top1']:+.2f}"
        ratio = "" if not row["delta_se"] else f"{abs(row['delta_top1']) / row['delta_se']:.1f}"
        seeds = ", ".join(f"{v:.2f}" for v in row["top1_per_seed"])
        flag = "" if row["complete"] else " (incomplete)"
        rows.append(
            [
                f"{row['label']}{flag}",
                row["n"],
                shared.format_mean_std(row["top1_mean"], row["top1_std"]),
                shared.format_mean_std(row["top5_mean"], row["top5_std"]),
                delta,
                ratio,
                seeds,
            ]
        )
    lines = [
        f"## {report['title']}",
        "",
        f"Final-epoch test error (%), mean ± sample std over seeds; {len(report['runs'])} runs. "
        "Δ = mean top-1 minus the `none` row; |Δ|/SE compares it with the seed-to-seed spread.",
        "",
        *shared.markdown_table(head, rows),
        *_comparison_lines(report.get("comparisons", ())),
    ]
    return "\n".join(lines) + "\n"


CSV_FIELDS = (
    "label",
    "method",
    "r",
    "n",
    "seeds",
    "top1_mean",
    "top1_std",
    "top5_mean",
    "top5_std",
    "delta_top1",
    "delta_se",
    "top1_per_seed",
    "top5_per_seed",
)


def to_csv(report: dict[str, Any]) -> str:
    """The rows as CSV (per-seed values joined with ';')."""
    rows = []
    for row in report["rows"]:
        out = {k: row[k] for k in CSV_FIELDS}
        for k in ("seeds", "top1_per_seed", "top5_per_seed"):
            out[k] = ";".join(str(v) for v in row[k])
        rows.append([out[k] for k in CSV_FIELDS])
    return shared.csv_text(CSV_FIELDS, rows)


def to_png(report: dict[str, Any]) -> bytes:
    """A bar chart of mean top-1 error per method with sample-std error bars and per-seed dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4.2), dpi=120)
    means = [r["top1_mean"] for r in rows]
    stds = [r["top1_std"] or 0.0 for r in rows]
    ax.bar(x, means, yerr=stds, capsize=3, color="#7aa6c2", edgecolor="#2f4f63", label="mean ± sample std")
    for i, row in enumerate(rows):
        ax.scatter(
            np.full(row["n"], i),
            row["top1_per_seed"],
            s=10,
            color="black",
            zorder=3,
            label="one seed" if i == 0 else None,
        )
    base = next((r for r in rows if r["label"] == BASELINE), None)
    if base is not None:
        ax.axhline(base["top1_mean"], color="#b03030", lw=1, ls="--", label=f"{BASELINE} (mean)")
    ax.set_xticks(x)
    ax.set_xticklabels([r["label"] for r in rows], rotation=55, ha="right", fontsize=8)
    ax.set_ylabel("top-1 test error (%)")
    ax.set_title(report["title"], fontsize=10)
    low = min(min(r["top1_per_seed"]) for r in rows)
    high = max(max(r["top1_per_seed"]) for r in rows)
    ax.set_ylim(max(0.0, low - 0.25 * (high - low + 1)), high + 0.15 * (high - low + 1))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_report(report: dict[str, Any], out: str, png_name: str = "report.png") -> dict[str, str]:
    """Write report.md / .csv / .json and the chart under ``out`` (each atomically); returns the paths."""
    return shared.write_report_files(
        out,
        to_markdown(report),
        to_csv(report),
        report,
        lambda path: atomic_write_bytes(path, to_png(report)),
        png_name,
        json_indent=1,
    )
