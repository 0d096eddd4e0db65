"""Compare pretraining runs like the paper's Tables 4/5: one row per method, mean ± std over seeds.

A run folder is an OUTPUT_DIR of salfmix.cli.pretrain. Its result is the LAST record of
``metrics.jsonl`` (the final epoch's ``top1_err`` / ``top5_err``, in percent). Its name and seed
come from ``run_info.json`` (written by salfmix.cli.run_study: ``tag``, ``method``, ``seed``, ``r``)
or else from the saved ``config.yaml`` (``MIX.METHOD``, ``MIX.R``, ``SEED``): methods that take
a patch ratio get ``_r<R>`` appended when R is not the paper's 0.3, and a run whose config says
``MIX.SALIENCY cached`` gets ``+cached``. Runs sharing a name are averaged; the spread is the
sample standard deviation (ddof = 1) over seeds. Chosen pairs of rows are compared with Welch's
two-sided t-test on their per-seed top-1 errors (``compare``).

The training side of a run, where its last record has it, comes beside the test error: the
optimised loss of the last epoch (``train_loss``: on the mixed batches of a mixing method) and, for
a run with ``TEST.TRAIN_SET``, the loss and top-1 error of the final model on the clean training
set (``train_eval_loss``, ``train_top1_err``), which say whether a run has fit its training data.
The tables and the chart are :mod:`pretrain.report_format`'s.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pretrain.mixing import MIXERS, takes_patch_ratio
from salfmix.runs import report as shared

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
    # The training side (None where the last record lacks it): see the module's docstring.
    train_loss: float | None = None
    train_eval_loss: float | None = None
    train_top1_err: float | None = None
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
        recipe=recipe,
        **{key: _optional_float(last, key, run_dir) for key in TRAIN_KEYS},
    )


# The training-side keys of a run's last record (RunResult fields of the same names; a row has
# ``<key>_mean`` / ``<key>_std``).
TRAIN_KEYS = ("train_loss", "train_eval_loss", "train_top1_err")


def _optional_float(record: dict[str, Any], key: str, run_dir: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"{run_dir}/metrics.jsonl: the last record's {key!r} is {value!r}, expected a number")
    return float(value)


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
                **_train_columns(members),
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


def _train_columns(members: Sequence[RunResult]) -> dict[str, float | None]:
    """``<key>_mean`` / ``<key>_std`` of each training-side key, None unless every seed has it (a
    mean over some of the seeds would not be the row's)."""
    out: dict[str, float | None] = {}
    for key in TRAIN_KEYS:
        values = [getattr(m, key) for m in members]
        stats = shared.mean_std(values) if all(v is not None for v in values) else {"mean": None, "std": None}
        out[f"{key}_mean"], out[f"{key}_std"] = stats["mean"], stats["std"]
    return out


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
