"""salfmix.pipeline.plan: every (method, seed) named after the config it trains, checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from salfmix.pipeline.plan import PipelineError, plan_pipelines, split_words

REPO = Path(__file__).resolve().parents[3]
PRETRAIN = "pretrain/Base-Demo-R50.yaml"
DET = str(REPO / "configs" / "detection" / "voc_demo_faster_rcnn_R_50_FPN_cpu.yaml")


def test_plans_are_method_major_with_their_folders(tmp_path) -> None:
    plans = plan_pipelines(
        ["none", "cutmix", "none"], [1, 0, 1], str(tmp_path), PRETRAIN, DET, ["SOLVER.MAX_EPOCHS", "1"]
    )
    assert [p.name for p in plans] == ["none_s1", "none_s0", "cutmix_s1", "cutmix_s0"]
    first = plans[0]
    assert first.pretrain_config.endswith("Base-Demo-R50.yaml") and first.set_method  # a base: MIX.METHOD per plan
    assert first.pretrain_overrides()[-6:] == [
        "MIX.METHOD",
        "none",
        "SEED",
        "1",
        "OUTPUT_DIR",
        str(tmp_path / "pretrain" / "none_s1"),
    ]
    det = dict(zip(first.det_overrides()[::2], first.det_overrides()[1::2]))
    assert det["SALFMIX.METHOD"] == "none" and det["MODEL.WEIGHTS"] == str(tmp_path / "weights" / "none_s1.pkl")
    assert first.log("pretrain") == str(tmp_path / "logs" / "none_s1.pretrain.log")


def test_an_override_that_changes_the_method_is_refused(tmp_path) -> None:
    from leaves import leaf_config

    with pytest.raises(
        PipelineError,
        match=r"^--method none: --pretrain-opts set MIX.METHOD cutmix; it is set from "
        r"the method \(none\)",
    ):
        plan_pipelines(["none", "cutmix"], [0], str(tmp_path), PRETRAIN, DET, ["MIX.METHOD", "cutmix"])
    with pytest.raises(
        PipelineError, match=r"^--method none: .*demo_r50_cutmix.yaml trains MIX.METHOD cutmix, not none"
    ):
        plan_pipelines(["none"], [0], str(tmp_path), leaf_config("demo_r50_cutmix"), DET)


def test_the_checks_name_what_is_wrong(tmp_path) -> None:
    with pytest.raises(PipelineError, match=r"--num-gpus 0"):
        plan_pipelines(["none"], [0], str(tmp_path), PRETRAIN, DET, num_gpus=0)
    with pytest.raises(PipelineError, match=r"--det-opts: expected KEY VALUE pairs"):
        plan_pipelines(["none"], [0], str(tmp_path), PRETRAIN, DET, det_opts=["SOLVER.MAX_ITER"])
    with pytest.raises(PipelineError, match=r"--det-config .*: override SOLVER.NOPE: unknown config key"):
        plan_pipelines(["none"], [0], str(tmp_path), PRETRAIN, DET, det_opts=["SOLVER.NOPE", "1"])
    with pytest.raises(PipelineError, match=r"no config for method 'puzzlemix'"):
        plan_pipelines(["puzzlemix"], [0], str(tmp_path), str(tmp_path / "{method}.yaml"), DET)
    assert not list(tmp_path.iterdir())


def test_split_words() -> None:
    assert split_words(["none cutmix", "salfmix"]) == ["none", "cutmix", "salfmix"] and split_words(None) == []
