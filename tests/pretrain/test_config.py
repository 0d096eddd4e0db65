"""The pretraining config tree and every shipped YAML."""
import glob
import os

import pytest

from pretrain.config import load_config
from pretrain.engine.builders import build_mixer, mixer_params
from pretrain.mixing import MIXERS

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pretrain", "*.yaml")))
LEAVES = [c for c in CONFIGS if not os.path.basename(c).startswith("Base-")]


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_yaml_loads(path):
    cfg = load_config(path)
    assert cfg.is_frozen()


@pytest.mark.parametrize("path", LEAVES, ids=os.path.basename)
def test_every_leaf_builds_its_mixer(path):
    import torch

    cfg = load_config(path)
    assert cfg.MIX.METHOD in os.path.basename(path)
    mixer = build_mixer(cfg, torch.Generator().manual_seed(0))
    assert type(mixer) is MIXERS[cfg.MIX.METHOD]


def test_every_method_has_a_leaf_per_family():
    names = {os.path.basename(c)[:-5] for c in LEAVES}
    for prefix in ("tinyimagenet_r50", "cifar100_preact18", "demo_r50"):
        for method in MIXERS:
            assert f"{prefix}_{method}" in names


def test_paper_recipe_values():
    tiny = load_config(LEAVES[0].replace(os.path.basename(LEAVES[0]), "tinyimagenet_r50_hybridmix_v3.yaml"))
    assert (tiny.SOLVER.BASE_LR, tiny.SOLVER.MOMENTUM, tiny.SOLVER.WEIGHT_DECAY) == (0.05, 0.9, 1e-4)
    assert tuple(tiny.SOLVER.STEPS) == (75, 150, 225) and tiny.SOLVER.BATCH_SIZE == 128 and tiny.MIX.N == 8
    assert mixer_params(tiny) == {"n": 8, "r": 0.3, "partner": "uniform", "beta": 1.0, "prob": 1.0, "per_sample": False}


def test_overrides_and_errors(tmp_path):
    leaf = [c for c in LEAVES if c.endswith("demo_r50_salfmix.yaml")][0]
    cfg = load_config(leaf, ["MIX.R", "0.5", "SEED", "3"])
    assert cfg.MIX.R == 0.5 and cfg.SEED == 3
    with pytest.raises(ValueError, match="overrides: unknown config key.*MIX.RR"):
        load_config(leaf, ["MIX.RR", "0.5"])
    with pytest.raises(ValueError, match="overrides: expected KEY VALUE pairs"):
        load_config(leaf, ["MIX.R"])
    with pytest.raises(ValueError, match="MIX.METHOD: expected one of"):
        load_config(leaf, ["MIX.METHOD", "cutmx"])
    with pytest.raises(ValueError, match="MIX.SALIENCY: expected one of"):
        load_config(leaf, ["MIX.SALIENCY", "stale"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("SOLVER:\n  MAX_EPOCS: 3\n")
    with pytest.raises(ValueError, match="bad.yaml: unknown config key"):
        load_config(str(bad))
    with pytest.raises(FileNotFoundError, match="nope.yaml: config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
