"""Put detection runs side by side like the paper's Table 8: one row per pretraining method.

A run folder is a Detectron2 ``OUTPUT_DIR`` written by ``salfmix.cli.train_detection``:

- ``eval_results.json`` (required): ``{"iteration", "max_iter", "datasets": {name: {"AP",
  "AP50", "AP75", "per_class_AP50": {...}}}}``;
- ``run_info.json``: ``method`` (rows are grouped by it) and ``seed``; when absent, the
  ``SALFMIX.METHOD`` and ``SEED`` of the saved ``config.yaml``, then the folder's name;
- ``pretrain_metrics.json`` (optional): ``top1_err`` and ``top5_err`` (percent) of the backbone.

Several runs of one method (seeds) give mean ± sample standard deviation. Each run's protocol
(:mod:`detection.protocol`: layout, norm, batch, lr and schedule as trained) is the
``protocol`` of ``run_info.json``, else derived from ``config.yaml`` and the recorded world
size; runs of one method under different protocols are refused rather than averaged.
"""

from __future__ import annotations

import os
import textwrap
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from detection.files import EVAL_RESULTS_FILE, PRETRAIN_METRICS_FILE, RUN_INFO_FILE
from detection.protocol import protocol_from_config
from salfmix.errors import DetectionSetupError
from salfmix.runs import report as shared

__all__ = ["PAPER_TABLE8", "aggregate", "build_report", "has_final_results", "is_final", "read_run", "write_report"]

METRICS = ("AP", "AP50", "AP75")
PRETRAIN_METRICS = ("top1_err", "top5_err")
# The paper's Table 8 (Faster R-CNN, VOC07 test), keyed by the pretraining method's mixer name.
PAPER_TABLE8 = {
    "baseline": (37.04, 65.86, 36.69),
    "cutout": (36.90, 65.40, 36.74),
    "salfmix": (37.23, 66.29, 36.85),
    "mixup": (37.21, 65.63, 36.23),
    "saliencymix": (40.31, 69.46, 40.71),
    "cutmix": (39.72, 69.04, 39.90),
    "resizemix": (39.20, 68.05, 39.23),
    "hybridmix_v1": (38.66, 67.33, 38.21),
    "hybridmix_v2": (40.45, 69.51, 40.87),
    "hybridmix_v3": (40.78, 70.38, 40.64),
}
_ALIASES = {"none": "baseline"}


def _read_json(path: str) -> Any:
    return shared.read_json(path, DetectionSetupError)


def _saved_config(run_dir: str) -> dict[str, Any]:
    return shared.read_yaml(os.path.join(run_dir, "config.yaml"), DetectionSetupError, strict=False)


def is_final(results: dict[str, Any], run_dir: str | None = None) -> bool:
    """Whether an ``eval_results.json`` content is the final evaluation of the model of its folder:
    the training loop's after the last iteration, or an ``--eval-only`` (``iteration`` null) of the
    folder's own ``model_final.pth`` (in a training run's folder; any weights in a folder that
    only holds evaluations). A periodic evaluation (``TEST.EVAL_PERIOD``) is not final, nor an
    evaluation of other weights written into a training run's folder."""
    iteration = results.get("iteration")
    if iteration is not None:
        return iteration >= (results.get("max_iter") or 0)
    if run_dir is None:
        return True
    own = os.path.join(run_dir, "model_final.pth")
    training = os.path.isfile(own) or os.path.isfile(os.path.join(run_dir, "run.json"))
    if not training:
        return True
    weights = results.get("weights")
    if weights is None:  # results from before they recorded their weights: run_info.json's record
        info_path = os.path.join(run_dir, RUN_INFO_FILE)
        try:
            info = _read_json(info_path) if os.path.isfile(info_path) else {}
        except DetectionSetupError:
            info = {}
        weights = info.get("eval_weights") if isinstance(info, dict) else None
    if not weights:
        return False
    candidate = weights if os.path.isabs(weights) else os.path.join(os.getcwd(), weights)
    return os.path.exists(candidate) and os.path.realpath(candidate) == os.path.realpath(own)


def has_final_results(run_dir: str) -> bool:
    """Whether ``run_dir`` holds a readable ``eval_results.json`` that :func:`is_final` accepts."""
    path = os.path.join(run_dir, EVAL_RESULTS_FILE)
    if not os.path.isfile(path):
        return False
    try:
        results = _read_json(path)
    except DetectionSetupError:
        return False
    return isinstance(results, dict) and bool(results.get("datasets")) and is_final(results, run_dir)


def read_run(run_dir: str, dataset: str | None = None) -> dict[str, Any]:
    """The method, seed, AP/AP50/AP75, per-class AP50 and pretraining errors of one run folder."""
    if not os.path.isdir(run_dir):
        raise DetectionSetupError(f"{run_dir}: run folder not found")
    eval_path = os.path.join(run_dir, EVAL_RESULTS_FILE)
    if not os.path.isfile(eval_path):
        raise DetectionSetupError(
            f"{run_dir}: no evaluation results ({EVAL_RESULTS_FILE}); train to the end or run with --eval-only"
        )
    results = _read_json(eval_path)
    datasets = results.get("datasets") if isinstance(results, dict) else None
    if not isinstance(datasets, dict) or not datasets:
        raise DetectionSetupError(f"{eval_path}: expected a 'datasets' entry with results")
    if dataset is None:
        dataset = "voc_2007_test" if "voc_2007_test" in datasets or len(datasets) > 1 else next(iter(datasets))
    if dataset not in datasets:
        raise DetectionSetupError(f"{eval_path}: no results for {dataset} (has {', '.join(datasets)})")
    res = datasets[dataset]
    if not all(isinstance(res.get(k), (int, float)) for k in METRICS):
        raise DetectionSetupError(f"{eval_path}: {dataset} lacks numeric AP, AP50 and AP75")

    info_path = os.path.join(run_dir, RUN_INFO_FILE)
    info = _read_json(info_path) if os.path.isfile(info_path) else {}
    config = _saved_config(run_dir)
    method = (
        info.get("method") or (config.get("SALFMIX") or {}).get("METHOD") or os.path.basename(os.path.normpath(run_dir))
    )
    seed = info.get("seed", config.get("SEED"))
    protocol = info.get("protocol") or protocol_from_config(config, info.get("world_size"))

    run = {
        "run_dir": run_dir,
        "method": str(method),
        "seed": seed,
        "protocol": str(protocol),
        "dataset": dataset,
        "per_class_AP50": res.get("per_class_AP50") or {},
        # eval_results.json holds the latest evaluation; an earlier one means an unfinished run
        "final": is_final(results, run_dir),
        "config": config,
    }
    run.update({k: float(res[k]) for k in METRICS})
    pre_path = os.path.join(run_dir, PRETRAIN_METRICS_FILE)
    if os.path.isfile(pre_path):
        pre = _read_json(pre_path)
        for k in PRETRAIN_METRICS:
            if isinstance(pre.get(k), (int, float)):
                run[k] = float(pre[k])
    return run


# Keys in which the runs of one row may differ: the seed, the backbone file (each seed has its own),
# where runs and data are, how often they log and checkpoint.
ROW_MAY_DIFFER = (
    "SEED",
    "OUTPUT_DIR",
    "MODEL.WEIGHTS",
    "SALFMIX.PRETRAIN_METRICS",
    "SALFMIX.VOC_FOLDER.DIR",
    "SOLVER.CHECKPOINT_PERIOD",
    "TEST.EVAL_PERIOD",
    "DATALOADER.NUM_WORKERS",
    "VIS_PERIOD",
)
INCOMPLETE = " (incomplete)"


def aggregate(runs: Sequence[dict[str, Any]], allow_incomplete: bool = False) -> list[dict[str, Any]]:
    """One entry per method (in order of first appearance): mean and std of every metric.

    Entry: ``method``, ``runs`` (count), ``AP``/``AP50``/``AP75`` (means), ``*_std`` (sample
    std, null for a single run), ``top1_err``/``top5_err`` (+ ``_std``) when known, ``seeds``,
    ``run_dirs``, ``per_class_AP50`` (means), ``protocol`` and ``paper`` (Table 8's AP/AP50/AP75
    or null). Runs of one method under different protocols raise :class:`DetectionSetupError`.
    """
    groups: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for run in runs:
        if not run["final"] and not allow_incomplete:
            raise DetectionSetupError(
                f"{run['run_dir']}: its results are not its finished model's (a periodic evaluation, or an evaluation "
                "of other weights): an unfinished run is never averaged with finished ones; finish it, or pass "
                "--allow-incomplete to show it in a row of its own"
            )
        groups.setdefault(run["method"] + ("" if run["final"] else INCOMPLETE), []).append(run)
    out = []
    for method, items in groups.items():
        conflict = shared.recipe_conflict(
            [(r["run_dir"], r.get("config") or {}) for r in items if r.get("config")], ROW_MAY_DIFFER
        )
        if conflict:
            raise DetectionSetupError(f"{method}: {conflict}")
        first = items[0]
        other = next((r for r in items if r.get("protocol") != first.get("protocol")), None)
        if other is not None:
            raise DetectionSetupError(
                f"{method}: runs of different protocols cannot be averaged: {first['run_dir']} "
                f"'{first.get('protocol')}' vs {other['run_dir']} '{other.get('protocol')}'; report them separately"
            )
        entry: dict[str, Any] = {"method": method, "runs": len(items), "protocol": first.get("protocol")}
        for k in METRICS + PRETRAIN_METRICS:
            stats = shared.mean_std([r.get(k) for r in items])
            if k in PRETRAIN_METRICS and stats["mean"] is None:
                continue
            entry[k], entry[f"{k}_std"] = stats["mean"], stats["std"]
        classes = list(OrderedDict.fromkeys(c for r in items for c in r["per_class_AP50"]))
        entry["per_class_AP50"] = {
            c: shared.mean_std([r["per_class_AP50"].get(c) for r in items])["mean"] for c in classes
        }
        entry["seeds"] = [r["seed"] for r in items]
        entry["run_dirs"] = [r["run_dir"] for r in items]
        entry["incomplete_runs"] = [r["run_dir"] for r in items if not r["final"]]
        paper = PAPER_TABLE8.get(_ALIASES.get(method.lower(), method.lower()))
        entry["paper"] = dict(zip(METRICS, paper)) if paper else None
        out.append(entry)
    return out


def _protocols(methods: list[dict[str, Any]]) -> list[str]:
    return list(OrderedDict.fromkeys(str(m.get("protocol")) for m in methods))


def _markdown(methods: list[dict[str, Any]], dataset: str, note: str | None = None) -> str:
    has_pre = any("top1_err" in m for m in methods)
    has_paper = any(m["paper"] for m in methods)
    protocols = _protocols(methods)
    per_row = len(protocols) > 1  # else the one protocol is named once, above the table
    head = ["Backbone pretraining", "runs", "AP", "AP50", "AP75"]
    head += ["top-1 err", "top-5 err"] if has_pre else []
    head += ["paper AP / AP50 / AP75"] if has_paper else []
    mixed = "**The rows were fine-tuned under different protocols (last column): compare rows of one protocol only.**"
    lines = [
        f"# Faster R-CNN transfer on {dataset}",
        "",
        *([f"**{note}**", ""] if note else []),
        "Mean ± sample standard deviation over runs (seeds); AP in percent, as Detectron2's "
        "PascalVOCDetectionEvaluator computes it."
        + (" Top-1/top-5 errors (%) are the backbone's, from its pretraining." if has_pre else ""),
        "",
        mixed if per_row else f"Protocol: {protocols[0]}.",
        "",
    ]
    rows = []
    for m in methods:
        row = [m["method"], str(m["runs"])] + [shared.format_mean_std(m[k], m[f"{k}_std"]) for k in METRICS]
        if has_pre:
            row += [shared.format_mean_std(m.get(k), m.get(f"{k}_std")) for k in PRETRAIN_METRICS]
        if has_paper:
            row.append(" / ".join(f"{v:.2f}" for v in m["paper"].values()) if m["paper"] else "-")
        if per_row:
            row.append(str(m.get("protocol")))
        rows.append(row)
    align = ["left"] + ["right"] * (len(head) - 1) + ["left"] * per_row
    lines += shared.markdown_table(head + ["protocol"] * per_row, rows, align)
    classes = list(OrderedDict.fromkeys(c for m in methods for c in m["per_class_AP50"]))
    if classes:
        lines += ["", "## AP50 per class (mean over runs)", ""]
        per_class = [[c] + [shared.format_mean_std(m["per_class_AP50"].get(c), None) for m in methods] for c in classes]
        lines += shared.markdown_table(
            ["class"] + [m["method"] for m in methods], per_class, ["left"] + ["right"] * len(methods)
        )
    incomplete = [d for m in methods for d in m["incomplete_runs"]]
    if incomplete:
        lines += [
            "",
            f"Rows marked{INCOMPLETE} hold runs whose results are not their finished model's (a periodic "
            "evaluation before the last iteration): " + ", ".join(incomplete),
        ]
    return "\n".join(lines) + "\n"


def _csv(methods: list[dict[str, Any]]) -> str:
    cols = ["method", "runs"] + [f"{k}{s}" for k in METRICS + PRETRAIN_METRICS for s in ("", "_std")]
    cols += ["seeds", "protocol"]
    rows = []
    for m in methods:
        row = []
        for c in cols:
            v = m.get(c)
            if c == "seeds":
                row.append(" ".join(str(s) for s in v))
            else:
                row.append(f"{v:.4f}" if isinstance(v, float) else v)
        rows.append(row)
    return shared.csv_text(cols, rows)


def _bar_chart(methods: list[dict[str, Any]], dataset: str, path: str, note: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(methods))
    width = 0.27
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(methods) + 2), 4.2))
    for i, k in enumerate(METRICS):
        means = [m[k] for m in methods]
        stds = [np.nan if m[f"{k}_std"] is None else m[f"{k}_std"] for m in methods]  # no bar for one run
        ax.bar(x + (i - 1) * width, means, width, yerr=stds, capsize=3, label=k)
    ax.set_xticks(x)
    ax.set_xticklabels([m["method"] for m in methods], rotation=30, ha="right")
    ax.set_ylabel("%")
    title = f"Faster R-CNN on {dataset} by backbone pretraining"
    protocols = _protocols(methods)
    if len(protocols) == 1:
        title += "\n" + textwrap.fill(protocols[0], width=int(fig.get_figwidth() * 14))
    if note:  # wrapped to the figure's width
        title += "\n" + textwrap.fill(note, width=int(fig.get_figwidth() * 14))
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    try:
        shared.save_figure(fig, path)
    finally:
        plt.close(fig)


def is_report_folder(folder: str) -> bool:
    """Whether ``folder`` holds a report written by :func:`write_report` and no run (a glob such as
    ``output/det/*`` also matches the report folder of an earlier call)."""
    return (
        os.path.isfile(os.path.join(folder, "report.json"))
        and not os.path.isfile(os.path.join(folder, EVAL_RESULTS_FILE))
        and not os.path.isfile(os.path.join(folder, "run.json"))
    )


def build_report(
    run_dirs: Sequence[str],
    dataset: str | None = None,
    note: str | None = None,
    warn: Callable[[str], None] | None = shared.print_warning,
    allow_incomplete: bool = False,
    out_dir: str | None = None,
) -> dict[str, Any]:
    """Read every run folder (errors name the folder; a folder given twice, e.g. ``d`` and ``d/``,
    is named through ``warn`` and counted once; a report folder, e.g. ``out_dir`` itself, is left
    out with a line) and aggregate per method; ``note`` (e.g. where the data comes from) is
    printed under the title and kept in the JSON."""
    if not run_dirs:
        raise DetectionSetupError("no run folders given")
    kept = []
    for run_dir in shared.unique_run_dirs(run_dirs, warn):
        is_out = out_dir is not None and os.path.realpath(run_dir) == os.path.realpath(out_dir)
        if is_out or (os.path.isdir(run_dir) and is_report_folder(run_dir)):
            if warn is not None:
                warn(f"{run_dir}: a report folder, not a run: left out")
            continue
        kept.append(run_dir)
    if not kept:
        raise DetectionSetupError("no run folders given (only report folders)")
    runs = [read_run(d, dataset) for d in kept]
    names = sorted({r["dataset"] for r in runs})
    if len(names) > 1:
        raise DetectionSetupError(
            f"the runs were evaluated on different datasets ({', '.join(names)}); pick one with --dataset"
        )
    report: dict[str, Any] = {"dataset": names[0], "methods": aggregate(runs, allow_incomplete)}
    if note:
        report["note"] = note
    return report


def write_report(report: dict[str, Any], out_dir: str) -> dict[str, str]:
    """Write report.md, report.csv, report.json and report.png into ``out_dir``; return the paths."""
    return shared.write_report_files(
        out_dir,
        _markdown(report["methods"], report["dataset"], report.get("note")),
        _csv(report["methods"]),
        report,
        lambda path: _bar_chart(report["methods"], report["dataset"], path, report.get("note")),
    )
