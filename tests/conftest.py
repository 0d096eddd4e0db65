"""Shared pytest fixtures and markers, and the command-line tools as modules."""

import importlib

import pytest
import torch

# Each tool of tools/ is a thin entry point over a module of the package (get_parser, main, run).
TOOL_MODULES = {
    "pretrain_net": "salfmix.cli.pretrain",
    "train_detection": "salfmix.cli.train_detection",
    "convert_to_detectron2": "salfmix.cli.convert_to_detectron2",
    "run_pipeline": "salfmix.cli.run_pipeline",
    "run_methods": "salfmix.cli.run_methods",
    "run_study": "salfmix.cli.run_study",
    "cls_report": "salfmix.cli.cls_report",
    "voc_report": "salfmix.cli.voc_report",
    "visualize_mixing": "salfmix.cli.visualize_mixing",
    "make_demo_data": "salfmix.cli.make_demo_data",
    "make_digits_dataset": "salfmix.cli.make_digits_dataset",
    "demo": "salfmix.cli.demo",
    "bench_mixing": "salfmix.bench.mixing",
    "bench_pretrain": "salfmix.bench.pretrain",
    "gpu_check_bench": "salfmix.bench.throughput",
    "gpu_check_detection": "salfmix.bench.detection",
    "gpu_check_report": "salfmix.bench.gpu_report",
    "gpu_check_wheels": "salfmix.install.wheels",
    "install_detectron2": "salfmix.install.detectron2",
}


def tool_module(name: str):
    """The module of tool ``name`` (``tools/<name>.py``)."""
    return importlib.import_module(TOOL_MODULES[name])


@pytest.fixture(scope="session")
def tool_modules() -> dict:
    """Each tool's name -> the module it is an entry point of."""
    return dict(TOOL_MODULES)


@pytest.fixture(scope="session")
def load_tool():
    """``load_tool("name")``: the module behind ``tools/name.py``."""
    return tool_module


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory):
    """A folder for one test module's shared fixtures, removed when the module ends: the
    per-test folders go when each test passes (pytest.ini), and without this a module's
    checkpoints would stay on the disk until the whole session ends."""
    import shutil

    folder = tmp_path_factory.mktemp("module")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A one-node SLURM cluster with accounting on this machine (salfmix.slurm_cluster), started
    once per session and stopped at its end (a cluster already running is used and left alone);
    skips with the reason where SLURM cannot start (no root, no packages, no network to get them)."""
    from pathlib import Path

    from salfmix.slurm_cluster import LocalSlurm, node_state

    cluster = LocalSlurm()
    reason = cluster.why_unavailable()
    if reason is None:
        try:
            cluster.start(tmp_path_factory.mktemp("slurm"))
        except RuntimeError as err:
            reason = cluster.why_unavailable() or str(err)
    if reason:
        pytest.skip(f"no SLURM cluster: {reason}")
    pids = [proc.pid for proc in cluster.started.values()]
    yield cluster
    cluster.stop()
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not alive, f"daemons still running after stop(): {alive}"
    if pids:  # we started the cluster: nothing of it is left
        assert node_state() is None
        assert not cluster.leftover_processes()


# What a full run holds on the disk at its peak (measured: README, "The two commands"): the
# per-test folders go when their test passes (pytest.ini), the shared fixtures' at their end.
PEAK_DISK_GIB = 3


def pytest_sessionstart(session: pytest.Session) -> None:
    """One line up front where the temp folder is short of space: a full disk otherwise shows as
    hundreds of unrelated errors (``OSError: [Errno 28]``) long into the run."""
    import shutil
    import tempfile

    folder = tempfile.gettempdir()
    free = shutil.disk_usage(folder).free / 2**30
    if free < PEAK_DISK_GIB + 1:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        line = f"WARNING: {folder} has {free:.1f} GiB free; a full run holds up to {PEAK_DISK_GIB} GiB there at once"
        if reporter is not None:
            reporter.write_line(line, yellow=True, bold=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a test that takes more than a few seconds")
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped without one (tools/gpu_check.sh runs them)")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _threads() -> None:
    # Two CPU cores on CI: keep torch from oversubscribing them.
    torch.set_num_threads(2)
