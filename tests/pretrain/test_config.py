"""The pretraining config tree and every shipped YAML."""

import glob
import os

import pytest

from pretrain.config import load_config
from pretrain.engine.builders import build_mixer, mixer_params
from pretrain.mixing import MIXERS, make_mixer
from salfmix.config_files import config_dir

CONFIGS = sorted(glob.glob(os.path.join(config_dir("pretrain"), "*.yaml")))
BASES = [c for c in CONFIGS if os.path.basename(c).startswith("Base-")]
CIFAR10 = os.path.join(config_dir("pretrain"), "Base-CIFAR10-PreAct18.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_yaml_loads(path):
    cfg = load_config(path)
    assert cfg.is_frozen()


def test_the_shipped_configs_are_one_base_per_family():
    """A base sets no MIX.METHOD: every method runs from it (leaves only where a recipe differs)."""
    from pretrain.config import config_sets

    assert CONFIGS == BASES
    assert all(config_sets(path, "MIX.METHOD") is None for path in BASES)


@pytest.mark.parametrize("path", BASES, ids=os.path.basename)
@pytest.mark.parametrize("method", list(MIXERS))
def test_every_method_runs_from_every_base(path, method):
    import torch

    cfg = load_config(path, ["MIX.METHOD", method])
    mixer = build_mixer(cfg, torch.Generator().manual_seed(0))
    assert type(mixer) is MIXERS[method]


def test_shipped_configs_are_found_by_name():
    """A tool's --config-file takes a path or a shipped config's name (installed: no checkout)."""
    cfg = load_config("pretrain/Base-Demo-R50.yaml")
    assert (
        cfg
        == load_config("configs/pretrain/Base-Demo-R50.yaml")
        == load_config(os.path.join(config_dir("pretrain"), "Base-Demo-R50.yaml"))
    )
    with pytest.raises(FileNotFoundError, match="pretrain/Nope.yaml: config file not found"):
        load_config("pretrain/Nope.yaml")


def test_paper_recipe_values():
    tiny = load_config("pretrain/Base-TinyImageNet-R50.yaml", ["MIX.METHOD", "hybridmix_v3"])
    assert (tiny.SOLVER.BASE_LR, tiny.SOLVER.MOMENTUM, tiny.SOLVER.WEIGHT_DECAY) == (0.05, 0.9, 1e-4)
    assert tuple(tiny.SOLVER.STEPS) == (75, 150, 225) and tiny.SOLVER.BATCH_SIZE == 128 and tiny.MIX.N == 8
    assert mixer_params(tiny) == {"n": 8, "r": 0.3, "partner": "uniform", "per_pair": True, "beta": 1.0, "prob": 1.0}
    assert tiny.MIX.START_EPOCH == 2  # Algorithm 2's rule, resolved into the saved config
    cifar = load_config(CIFAR10, ["MIX.METHOD", "cutmix"])
    assert mixer_params(cifar)["prob"] == 0.5  # the official CIFAR CutMix setting, in the family's base


def test_overrides_and_errors(tmp_path):
    leaf = "pretrain/Base-Demo-R50.yaml"
    cfg = load_config(leaf, ["MIX.METHOD", "salfmix", "MIX.R", "0.5", "SEED", "3"])
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


@pytest.mark.parametrize("method", list(MIXERS))
def test_start_epoch_is_the_methods_rule(method):
    cfg = load_config(CIFAR10, ["MIX.METHOD", method])
    assert cfg.MIX.START_EPOCH == MIXERS[method].start_epoch >= 1
    assert load_config(CIFAR10, ["MIX.METHOD", method, "MIX.START_EPOCH", "5"]).MIX.START_EPOCH == 5


@pytest.mark.parametrize("method", list(MIXERS))
def test_mixer_params_come_from_the_methods_own_node(method):
    leaf = CIFAR10
    cls = MIXERS[method]
    opts = ["MIX.METHOD", method, "MIX.R", "0.4"]
    if "prob" in cls.config_args:
        opts += [f"MIX.{method.upper()}.PROB", "0.25"]
    cfg = load_config(leaf, opts)
    params = mixer_params(cfg)
    assert set(params) == set(cls.config_args) | set(cls.config_keys)
    defaults = cls.config_defaults()
    for arg in cls.config_args:  # the node holds every own argument, defaulting to the constructor's
        expected = 0.25 if arg == "prob" else defaults[arg]
        assert params[arg] == (tuple(expected) if isinstance(expected, list) else expected)
    if cls.config_keys.get("r") == "MIX.R":
        assert params["r"] == 0.4
    make_mixer(method, **params)  # every value the tree holds is one the constructor accepts


def test_a_key_of_the_former_flat_tree_names_where_it_went():
    leaf = CIFAR10
    with pytest.raises(ValueError, match=r"MIX.BETA: each method's hyperparameters are in its own node now"):
        load_config(leaf, ["MIX.BETA", "0.7"])


def test_cosine_schedule_anneals_to_zero_over_the_run():
    import torch

    from pretrain.engine.builders import build_scheduler

    leaf = CIFAR10
    cfg = load_config(leaf, ["SOLVER.LR_SCHEDULE", "cosine", "SOLVER.MAX_EPOCHS", "10", "SOLVER.BASE_LR", "0.1"])
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=cfg.SOLVER.BASE_LR)
    scheduler, lrs = build_scheduler(cfg, optimizer), []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.1 and lrs[5] == pytest.approx(0.05) and all(a > b for a, b in zip(lrs, lrs[1:]))
    with pytest.raises(ValueError, match="SOLVER.LR_SCHEDULE: expected one of"):
        load_config(leaf, ["SOLVER.LR_SCHEDULE", "linear"])


@pytest.mark.parametrize("method", [m for m, cls in MIXERS.items() if cls.start_epoch > 1])
def test_a_method_that_would_never_mix_is_refused(method):
    """SalfMix's own rule mixes from epoch 2: a 1-epoch run would be labelled SalfMix and train the baseline."""
    leaf = CIFAR10
    start = MIXERS[method].start_epoch
    with pytest.raises(
        ValueError, match=rf"MIX.START_EPOCH: {method} mixes from epoch {start} but SOLVER.MAX_EPOCHS is 1"
    ):
        load_config(leaf, ["MIX.METHOD", method, "SOLVER.MAX_EPOCHS", "1"])
    assert (
        load_config(leaf, ["MIX.METHOD", method, "SOLVER.MAX_EPOCHS", "1", "MIX.START_EPOCH", "1"]).MIX.START_EPOCH == 1
    )
    assert load_config(leaf, ["MIX.METHOD", "none", "SOLVER.MAX_EPOCHS", "1", "MIX.START_EPOCH", "5"])  # nothing to mix
