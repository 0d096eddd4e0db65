"""Generated demo datasets (tools/make_demo_data.py) in the real layouts, shared by the data tests."""

import os
import shutil

import pytest


def _load_tool():
    import salfmix.cli.make_demo_data as module

    return module


@pytest.fixture(scope="session")
def demo_tool():
    """The make_demo_data tool as a module."""
    return _load_tool()


SMALL = ["--classes", "4", "--train-per-class", "10", "--val-per-class", "5"]
SMALL += ["--cifar100-train-per-class", "2", "--cifar100-test-per-class", "1"]


@pytest.fixture(scope="session")
def demo_args():
    """The small make_demo_data options the shared demo folder is made with."""
    return list(SMALL)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory, demo_tool):
    """A read-only-by-convention folder with generated tiny-imagenet-200/, cifar-10-batches-py/, cifar-100-python/."""
    out = str(tmp_path_factory.mktemp("demo"))
    demo_tool.main(demo_tool.get_parser().parse_args(["--out", out, *SMALL]))
    return out


@pytest.fixture
def demo_copy(demo_root, tmp_path):
    """``demo_copy(sub)``: a private copy of one generated dataset folder, safe to modify."""

    def copy(sub: str) -> str:
        dst = os.path.join(str(tmp_path), sub)
        shutil.copytree(os.path.join(demo_root, sub), dst, ignore=shutil.ignore_patterns(".salfmix_cache"))
        return dst

    return copy
