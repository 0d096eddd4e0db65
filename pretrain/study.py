"""A study plan: which pretraining runs (method or ablation tag x seed) and with which overrides.

Every run uses a shipped leaf config (``configs/pretrain/cifar10_preact18_<method>.yaml`` by
default: the CIFAR-10 PreActResNet-18 recipe) plus the study's ``KEY VALUE`` overrides, so it goes
through exactly the code path of ``tools/pretrain.py`` on CIFAR-10. Ablations add tags:

- ``saliency``: SalfMix with and without saliency (``salfmix`` vs ``salfmix_random``, Table 9);
- ``pooling``: SalfMix with and without average pooling (``salfmix`` vs ``salfmix_nopool``, cf. Table 10);
- ``cutout``: Cutout with and without saliency (``cutout_saliency`` vs ``cutout``, Table 9);
- ``r``: the patch ratio r of one method (``salfmix_r0.1``...; the base r is the plain tag; cf. Figure 5).

Run folders are ``OUTPUT_ROOT/<tag>/seed<k>``. This module only plans; :mod:`pipeline.study`
runs a plan (skip, resume, refuse, in this process or as child processes) with the stage code
the pipeline uses.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from pretrain.mixing import MIXERS
from runs.folder import is_finished

ABLATIONS: Dict[str, Tuple[str, ...]] = {
    "saliency": ("salfmix", "salfmix_random"),
    "pooling": ("salfmix", "salfmix_nopool"),
    "cutout": ("cutout", "cutout_saliency"),
    "r": (),
}
DEFAULT_R_VALUES = (0.1, 0.3, 0.5, 0.7)


@dataclass
class Recipe:
    """The study's training settings (the paper's CIFAR recipe, scaled down)."""

    epochs: int = 20
    batch_size: int = 20
    lr: float = 0.02  # the paper's 0.05 at batch 64, scaled linearly to batch 20
    input_size: int = 16
    n: int = 4
    r: float = 0.3
    start_epoch: int = 0  # 0: each method's own rule (2 for SalfMix/HybridMix, 1 for the baselines)
    checkpoint_period: int = 5
    saliency: str = "fresh"
    extra: List[str] = field(default_factory=list)
    # One base config for every method (``--config-file``): each run sets its MIX.METHOD.
    set_method: bool = False

    def steps(self) -> Tuple[int, ...]:
        """Learning-rate steps (x0.1) after 50% and 75% of the epochs (those inside the run)."""
        marks = {int(math.floor(self.epochs * f)) for f in (0.5, 0.75)}
        return tuple(sorted(s for s in marks if 1 <= s < self.epochs))


@dataclass
class StudyRun:
    """One planned run: its tag (row name), method, seed, patch ratio and folder."""

    tag: str
    method: str
    seed: int
    r: float
    run_dir: str

    @property
    def done(self) -> bool:
        """Whether the run finished: its ``run.json`` says so (a folder from before the manifests:
        its model_final.pth exists). :mod:`pipeline.study` runs the others."""
        return is_finished(self.run_dir)


def r_tag(method: str, r: float) -> str:
    """The tag of ``method`` at patch ratio ``r`` (e.g. ``salfmix_r0.1``)."""
    return f"{method}_r{r:g}"


def plan_tags(methods: Sequence[str], ablations: Sequence[str], r_values: Sequence[float] = DEFAULT_R_VALUES,
              r_method: str = "salfmix", base_r: float = 0.3) -> List[Tuple[str, str, float]]:
    """``(tag, method, r)`` for every row of the study, without duplicates, in MIXERS order.

    The methods asked for come first, then what the ablations need; an r equal to ``base_r`` is
    the plain method's row. Unknown names raise ValueError listing the valid ones.
    """
    for m in list(methods) + [r_method]:
        if m not in MIXERS:
            raise ValueError(f"unknown method {m!r}; valid: {', '.join(MIXERS)}")
    for a in ablations:
        if a not in ABLATIONS:
            raise ValueError(f"unknown ablation {a!r}; valid: {', '.join(ABLATIONS)}")
    wanted = set(methods)
    for a in ablations:
        wanted.update(ABLATIONS[a])
    tags = [(m, m, base_r) for m in MIXERS if m in wanted]
    if "r" in ablations:
        for r in sorted(set(float(v) for v in r_values)):
            if not 0 < r < 1:
                raise ValueError(f"r value {r}: expected 0 < r < 1")
            if math.isclose(r, base_r):
                if r_method not in wanted:
                    tags.append((r_method, r_method, base_r))
            else:
                tags.append((r_tag(r_method, r), r_method, r))
    return tags


def plan_runs(output_root: str, tags: Sequence[Tuple[str, str, float]], seeds: Sequence[int]) -> List[StudyRun]:
    """Every (tag, seed) run, seed-major (all tags of the first seed first: partial studies stay balanced)."""
    return [StudyRun(tag, method, int(seed), r, os.path.join(output_root, tag, f"seed{seed}"))
            for seed in seeds for tag, method, r in tags]


def run_opts(run: StudyRun, recipe: Recipe, data_root: str) -> List[str]:
    """The ``KEY VALUE`` overrides of one run on top of its leaf config (or of the study's base
    config, with ``MIX.METHOD`` first)."""
    opts = {
        **({"MIX.METHOD": run.method} if recipe.set_method else {}),
        "DATA.ROOT": data_root,
        "OUTPUT_DIR": run.run_dir,
        "SEED": run.seed,
        "MODEL.INPUT_SIZE": recipe.input_size,
        "MIX.N": recipe.n,
        "MIX.R": run.r,
        "MIX.START_EPOCH": recipe.start_epoch,
        "MIX.SALIENCY": recipe.saliency,
        "SOLVER.MAX_EPOCHS": recipe.epochs,
        "SOLVER.BATCH_SIZE": recipe.batch_size,
        "SOLVER.BASE_LR": recipe.lr,
        "SOLVER.STEPS": "(" + "".join(f"{s}," for s in recipe.steps()) + ")",
        "TRAIN.EVAL_PERIOD": recipe.epochs,  # evaluate once, after the last epoch
        "TRAIN.CHECKPOINT_PERIOD": recipe.checkpoint_period,
        "TRAIN.KEEP_CHECKPOINTS": 1,
        "TRAIN.PROGRESS": False,
    }
    out: List[str] = []
    for key, value in opts.items():
        out += [key, str(value)]
    return out + list(recipe.extra)


def config_file(config_dir: str, pattern: str, method: str) -> str:
    """The leaf config of ``method``; FileNotFoundError naming it when absent."""
    path = os.path.join(config_dir, pattern.format(method=method))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: config for method {method!r} not found (see --config-dir / --config-pattern)")
    return path


def format_duration(seconds: Optional[float]) -> str:
    """``1h02m03s`` style."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
