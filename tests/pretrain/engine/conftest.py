"""Fixtures of the engine tests: small generated data and tools/pretrain_net.py as a module."""

import pytest
from engine_helpers import SIZES, config, load_pretrain_tool

from pretrain.data.cache import load_dataset
from pretrain.data.demo import write_demo_data


@pytest.fixture(scope="session")
def engine_data(tmp_path_factory) -> dict[str, str]:
    """``{"tinyimagenet": folder, "cifar10": folder}`` of the generated data, packed in its default
    cache here: no test's output depends on whether an earlier test packed it (tests of the packing
    itself use caches of their own)."""
    out = str(tmp_path_factory.mktemp("engine_data"))
    made = {}
    for name, (classes, train, test) in SIZES.items():  # CIFAR-10 always has 10 classes
        made.update(write_demo_data(out, datasets=(name,), classes=classes, train_per_class=train, val_per_class=test))
        for split in ("train", "val"):  # "val" is CIFAR's test split (pretrain.data.sources)
            load_dataset(name, made[name], split, progress=False)
    return made


@pytest.fixture(scope="session")
def tiny_root(engine_data) -> str:
    """The generated tiny-imagenet-200 folder."""
    return engine_data["tinyimagenet"]


@pytest.fixture(scope="session")
def pretrain_tool():
    """tools/pretrain_net.py as a module (``get_parser()``, ``main(args)``)."""
    return load_pretrain_tool()


@pytest.fixture
def run_pretrain(pretrain_tool):
    """``run_pretrain(config_name, opts, resume=False)``: tools/pretrain_net.py's main in this process."""

    def run(name: str, opts: list[str], resume: bool = False):
        argv = ["--config-file", config(name)] + (["--resume"] if resume else []) + list(opts)
        return pretrain_tool.main(pretrain_tool.get_parser().parse_args(argv))

    return run
