"""The tables and the chart of a classification report (:mod:`pretrain.report`): markdown, CSV,
JSON and a bar chart of the top-1 error, written atomically by :func:`write_report`."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from pretrain.report import BASELINE, TRAIN_KEYS
from salfmix.runs import report as shared
from salfmix.runs.files import atomic_write_bytes


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


# The training-side columns: (key, header, digits); a column is shown when some row has it.
TRAIN_COLUMNS = (
    ("train_top1_err", "train err (clean)", 2),
    ("train_eval_loss", "train loss (clean)", 3),
    ("train_loss", "train loss (optimised)", 3),
)


def _shown_train_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [c for c in TRAIN_COLUMNS if any(row.get(f"{c[0]}_mean") is not None for row in rows)]


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table (one row per method), the training side (where the runs
    logged it) between the test error and the per-seed values."""
    train = _shown_train_columns(report["rows"])
    head = ["method", "seeds", "top-1 err", "top-5 err", "Δ top-1 vs none", "\\|Δ\\|/SE"]
    head += [name for _, name, _ in train] + ["top-1 per seed"]
    rows = []
    for row in report["rows"]:
        delta = "" if row["delta_top1"] is None else f"{row['delta_top1']:+.2f}"
        ratio = "" if not row["delta_se"] else f"{abs(row['delta_top1']) / row['delta_se']:.1f}"
        seeds = ", ".join(f"{v:.2f}" for v in row["top1_per_seed"])
        flag = "" if row["complete"] else " (incomplete)"
        train_cells = [
            shared.format_mean_std(row.get(f"{key}_mean"), row.get(f"{key}_std"), digits) for key, _, digits in train
        ]
        rows.append(
            [
                f"{row['label']}{flag}",
                row["n"],
                shared.format_mean_std(row["top1_mean"], row["top1_std"]),
                shared.format_mean_std(row["top5_mean"], row["top5_std"]),
                delta,
                ratio,
                *train_cells,
                seeds,
            ]
        )
    note = ""
    if train:
        note = (
            " Training side, final model: error (%) and loss on the clean training set (no "
            "augmentation, no mixing), and the loss the last epoch optimised (on mixed batches for a "
            "mixing method)."
        )
    lines = [
        f"## {report['title']}",
        "",
        f"Final-epoch test error (%), mean ± sample std over seeds; {len(report['runs'])} runs. "
        "Δ = mean top-1 minus the `none` row; |Δ|/SE compares it with the seed-to-seed spread." + note,
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
    *(f"{key}_{stat}" for key in TRAIN_KEYS for stat in ("mean", "std")),
    "top1_per_seed",
    "top5_per_seed",
)


def to_csv(report: dict[str, Any]) -> str:
    """The rows as CSV (per-seed values joined with ';')."""
    rows = []
    for row in report["rows"]:
        out = {k: row.get(k) for k in CSV_FIELDS}
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
