"""salfmix.runs.manifest: flat config comparison, versions, the git commit, the machine."""

import os
import shutil
import subprocess

import pytest

from salfmix.runs.manifest import config_drift, describe_drift, flatten, git_commit, machine, versions

OLD = "A:\n  B: 1\n  C: [1, 2]\nD: x\nTRAIN:\n  PROGRESS: true\n  EVAL_PERIOD: 1\n"


def test_flatten_uses_dotted_keys_and_keeps_lists():
    assert flatten({"A": {"B": 1, "C": [1, 2]}, "D": "x"}) == {"A.B": 1, "A.C": [1, 2], "D": "x"}


def test_config_drift_lists_every_difference_outside_the_allowlist():
    new = "A:\n  B: 2\n  C: [1, 3]\nE: 0\nTRAIN:\n  PROGRESS: false\n  EVAL_PERIOD: 5\n"
    drift = config_drift(OLD, new, allowed=("TRAIN.*",))
    assert drift == [("A.B", 1, 2), ("A.C", [1, 2], [1, 3]), ("D", "x", "<absent>"), ("E", "<absent>", 0)]
    assert describe_drift(drift, limit=2) == "A.B: 1 -> 2; A.C: [1, 2] -> [1, 3]; and 2 more"
    assert config_drift(OLD, OLD) == []
    assert [k for k, _, _ in config_drift(OLD, new, allowed=("TRAIN.PROGRESS", "A.B"))] == [
        "A.C",
        "D",
        "E",
        "TRAIN.EVAL_PERIOD",
    ]


def test_versions_and_commit(tmp_path):
    found = versions()
    assert found["python"].count(".") == 2 and found["torch"]
    assert git_commit(str(tmp_path)) is None  # not a checkout
    if shutil.which("git") is None:
        pytest.skip("no git")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(
        os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@b", GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@b"
    )
    for cmd in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, env=env)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert git_commit(str(repo)) == head
    (repo / "f").write_text("x")
    subprocess.run(["git", "add", "f"], cwd=repo, check=True)
    assert git_commit(str(repo)) == head + "+dirty"


def test_machine_names_the_cpu_kernels_and_threads():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = machine()
    finally:
        torch.set_num_threads(threads)
    assert found["cpu"] and found["cpus"] == os.cpu_count() and found["torch_threads"] == 1
    assert found["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert ("gpus" in found) == torch.cuda.is_available()
