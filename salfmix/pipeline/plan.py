"""The plan of a pipeline command: every (method, seed) checked before the first run starts.

:func:`plan_pipelines` resolves each method's pretraining config: a base config of a family
(one that sets no ``MIX.METHOD``, e.g. ``pretrain/Base-TinyImageNet-R50.yaml``) with
``MIX.METHOD`` set by the pipeline, or a file of one method (``{method}`` in the path is replaced
by the method). It loads it with the overrides the run will use and takes the run's label from
the ``MIX.METHOD`` that config actually trains: a ``--method`` that contradicts it is refused (a
leaf that trains ``none`` given for ``--method cutmix`` would train ``none``), as
is any unknown method name, a missing config file, an override that does not load, and an
override of a key the pipeline sets itself. The detection config is loaded the same way. So a
typo in the last of several methods stops the command before the first one trains.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from salfmix.config_files import resolve
from salfmix.errors import PipelineError

__all__ = ["PipelineError", "Plan", "PIPELINE_KEYS", "plan_pipelines", "split_words"]

# Keys each stage's command gets from the pipeline (its folders, seed, weights, label): an
# override of one in --pretrain-opts / --det-opts would make a run differ from its name.
PIPELINE_KEYS = {
    "pretrain": {"SEED": "--seed", "OUTPUT_DIR": "--out"},
    "detection": {
        "SEED": "--seed",
        "OUTPUT_DIR": "--out",
        "MODEL.WEIGHTS": "the pipeline's converted weights",
        "SALFMIX.METHOD": "--method (the pretraining config's MIX.METHOD)",
        "SALFMIX.PRETRAIN_METRICS": "the pipeline's pretraining run",
    },
}


def split_words(values: Sequence[str] | None) -> list[str]:
    """``["none cutmix", "salfmix"]`` -> ``["none", "cutmix", "salfmix"]`` (shell-quoted lists and
    separate words both work)."""
    return [word for value in values or [] for word in str(value).split()]


@dataclass
class Plan:
    """One (method, seed) through the pipeline: its label, configs, overrides and folders under ``out``."""

    label: str
    seed: int
    out: str
    pretrain_config: str
    pretrain_opts: list[str]
    det_config: str
    det_opts: list[str]
    num_gpus: int = 1
    notes: list[str] = field(default_factory=list)
    # The pretraining config is a base of several methods: the pipeline sets MIX.METHOD.
    set_method: bool = False
    # Where the plan starts, decided from the manifests before anything runs (salfmix.pipeline.checks).
    start: str = "run"

    @property
    def name(self) -> str:
        """``<label>_s<seed>``: the name of every file and folder of this pipeline."""
        return f"{self.label}_s{self.seed}"

    @property
    def pretrain_dir(self) -> str:
        """The pretraining run folder."""
        return os.path.join(self.out, "pretrain", self.name)

    @property
    def weights(self) -> str:
        """The converted Detectron2 backbone."""
        return os.path.join(self.out, "weights", f"{self.name}.pkl")

    @property
    def det_dir(self) -> str:
        """The detection run folder."""
        return os.path.join(self.out, "detection", self.name)

    def log(self, stage: str) -> str:
        """The log file of ``stage`` ("pretrain", "convert", "detection")."""
        return os.path.join(self.out, "logs", f"{self.name}.{stage}.log")

    def pretrain_overrides(self) -> list[str]:
        """The pretraining run's ``KEY VALUE`` overrides: the user's, then the pipeline's."""
        method = ["MIX.METHOD", self.label] if self.set_method else []
        return [*self.pretrain_opts, *method, "SEED", str(self.seed), "OUTPUT_DIR", self.pretrain_dir]

    def det_overrides(self) -> list[str]:
        """The detection run's ``KEY VALUE`` overrides: the user's, then the pipeline's."""
        return [
            *self.det_opts,
            "MODEL.WEIGHTS",
            self.weights,
            "SALFMIX.METHOD",
            self.label,
            "SEED",
            str(self.seed),
            "SALFMIX.PRETRAIN_METRICS",
            os.path.join(self.pretrain_dir, "metrics.jsonl"),
            "OUTPUT_DIR",
            self.det_dir,
        ]


def _check_keys(opts: Sequence[str], stage: str, option: str) -> None:
    if len(opts) % 2:
        raise PipelineError(f"{option}: expected KEY VALUE pairs, got an odd list {list(opts)}")
    for key in opts[::2]:
        if key in PIPELINE_KEYS[stage]:
            raise PipelineError(
                f"{option}: {key} is set by the pipeline ({PIPELINE_KEYS[stage][key]}); remove it from the overrides"
            )


def _pretrain_label(config: str, opts: Sequence[str], method: str | None, option: str) -> tuple[str, str, bool]:
    """The config file, the MIX.METHOD the plan trains and whether the pipeline sets it (see
    :func:`pretrain.config.method_config`: a base config takes ``method``, a config that trains
    another method is refused)."""
    from pretrain.config import config_sets, load_config, method_config

    if method is None:
        path = resolve(config)
        if not os.path.isfile(path):
            raise PipelineError(f"--pretrain-config: {path} does not exist")
        try:
            label = load_config(path, list(opts)).MIX.METHOD
        except (ValueError, FileNotFoundError) as err:
            raise PipelineError(f"--pretrain-config {path}: {err}") from None
        if config_sets(path, "MIX.METHOD") is None and "MIX.METHOD" not in list(opts)[::2]:
            # A base config trains its default method: a run labelled by accident, so ask.
            raise PipelineError(f"--pretrain-config {path} does not set MIX.METHOD: give --method")
        return path, label, False
    try:
        path, extra = method_config(config, method, opts)
    except FileNotFoundError as err:
        raise PipelineError(f"--pretrain-config: {err}") from None
    except ValueError as err:
        raise PipelineError(f"--method {method}: {str(err).replace('the overrides', option)}") from None
    return path, method, config_sets(path, "MIX.METHOD") is None


def _check_det_config(path: str, opts: Sequence[str]) -> None:
    from detection.config import load_config
    from salfmix.errors import DetectionSetupError

    try:
        load_config(path, list(opts))
    except DetectionSetupError as err:
        raise PipelineError(f"--det-config {path}: {err}") from None


def plan_pipelines(
    methods: Sequence[str | None],
    seeds: Sequence[int],
    out: str,
    pretrain_config: str,
    det_config: str,
    pretrain_opts: Sequence[str] = (),
    det_opts: Sequence[str] = (),
    num_gpus: int = 1,
) -> list[Plan]:
    """Every (method, seed) pipeline, seed-minor (all seeds of the first method first), checked
    as the module docstring says; raises :class:`PipelineError` at the first problem.

    A method None takes the label from the pretraining config (which then must not contain
    ``{method}``). Repeated methods or seeds are planned once.
    """
    from pretrain.config import METHOD_FIELD
    from pretrain.mixing import MIXERS

    if num_gpus < 1:
        raise PipelineError(f"--num-gpus {num_gpus}: expected a positive integer")
    if not seeds:
        raise PipelineError("--seeds: expected at least one seed")
    bad_seeds = [s for s in seeds if s < 0]
    if bad_seeds:
        raise PipelineError(f"--seed {bad_seeds[0]}: expected a non-negative integer")
    names = list(dict.fromkeys(methods))
    unknown = [m for m in names if m is not None and m not in MIXERS]
    if unknown:
        listed = ", ".join(repr(m) for m in unknown)
        raise PipelineError(
            f"unknown method{'s' if len(unknown) > 1 else ''} {listed}; valid: {', '.join(MIXERS)} (nothing was run)"
        )
    if None in names and METHOD_FIELD in pretrain_config:
        raise PipelineError(f"--pretrain-config {pretrain_config} contains {METHOD_FIELD}: give --method")
    _check_keys(pretrain_opts, "pretrain", "--pretrain-opts")
    _check_keys(det_opts, "detection", "--det-opts")
    det_config = resolve(det_config)
    if not os.path.isfile(det_config):
        raise PipelineError(
            f"--det-config: {det_config} does not exist (a file, or a shipped config such as "
            "detection/voc0712_faster_rcnn_R_50_C4_24k.yaml)"
        )
    labels = [_pretrain_label(pretrain_config, pretrain_opts, method, "--pretrain-opts") for method in names]
    _check_det_config(det_config, det_opts)
    plans: list[Plan] = []
    for path, label, set_method in labels:
        for seed in dict.fromkeys(int(s) for s in seeds):
            plans.append(
                Plan(
                    label,
                    seed,
                    out,
                    path,
                    list(pretrain_opts),
                    det_config,
                    list(det_opts),
                    num_gpus,
                    set_method=set_method,
                )
            )
    return plans
