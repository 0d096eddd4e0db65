"""salfmix.runs.cli: flags anywhere among the overrides; the resume command."""

import argparse
import shlex

import pytest

from salfmix.runs.cli import flags_anywhere, resume_command


def parser(remainder: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--config-file")
    p.add_argument("--resume", action="store_true")
    p.add_argument("opts", nargs=argparse.REMAINDER if remainder else "*")
    return flags_anywhere(p)


@pytest.mark.parametrize("remainder", [True, False])
@pytest.mark.parametrize(
    "argv",
    [
        ["--config-file", "f.yaml", "--resume", "SEED", "-1", "OUTPUT_DIR", "o"],
        ["--config-file", "f.yaml", "SEED", "-1", "OUTPUT_DIR", "o", "--resume"],
        ["SEED", "-1", "--resume", "OUTPUT_DIR", "o", "--config-file", "f.yaml"],
    ],
)
def test_flags_anywhere(remainder, argv):
    args = parser(remainder).parse_args(argv)
    assert args.resume and args.config_file == "f.yaml" and args.opts == ["SEED", "-1", "OUTPUT_DIR", "o"]


def test_no_opts_and_unknown_flags():
    assert parser(True).parse_args(["--config-file", "f"]).opts == []
    with pytest.raises(SystemExit):
        parser(False).parse_args(["--config-file", "f", "A", "1", "--nope"])


def test_resume_command(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cmd = resume_command("pkg.t", "c.yaml", ["SOLVER.STEPS", "(2,)"], python="python")
    assert shlex.split(cmd) == ["python", "-m", "pkg.t", "--config-file", "c.yaml", "SOLVER.STEPS", "(2,)", "--resume"]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    cmd = resume_command("pkg.t", "c", [], ["--x"], resume=False)
    assert cmd == "torchrun --nproc_per_node 4 -m pkg.t --config-file c --x"
