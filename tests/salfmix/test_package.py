"""The package as users get it: thin tools, commands as modules and console scripts, a wheel that
works without the checkout, and a new mixing method added as one module by the README's recipe."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CODE = ("pretrain", "detection", "salfmix", "tools", "tests")


def _python_files(*roots: str):
    for root in roots:
        yield from sorted((REPO / root).rglob("*.py"))


def test_no_sys_path_edits_anywhere():
    edits = [
        f"{path.relative_to(REPO)}:{n}"
        for path in _python_files(*CODE)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"sys\.path\.(insert|append)|sys\.path\s*=", line) and path.name != "test_package.py"
    ]
    assert not edits, f"sys.path edited at {edits}"


def test_tools_are_thin_entry_points_of_package_modules(tool_modules):
    tools = sorted(p.stem for p in (REPO / "tools").glob("*.py"))
    assert tools == sorted(tool_modules)
    for name in tools:
        text = (REPO / "tools" / f"{name}.py").read_text(encoding="utf-8")
        imports = [node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ImportFrom)]
        assert [node.module for node in imports] == [tool_modules[name]], name
        assert len(text.splitlines()) <= 10, f"tools/{name}.py is library code, not an entry point"
    for script in (REPO / "tools").glob("*.sh"):  # the shell tools call modules, not files of tools/
        code = [line for line in script.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
        assert not [line for line in code if re.search(r"tools/\w+\.py", line)], script.name


@pytest.mark.slow
def test_every_tool_runs_as_a_script():
    # `python tools/X.py` puts tools/ first on sys.path: a tool named like a package would shadow it.
    tools = sorted((REPO / "tools").glob("*.py"))
    assert not {p.stem for p in tools} & {"pretrain", "detection", "salfmix"}
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = {
        p.name: subprocess.Popen(
            [sys.executable, str(p), "--help"],
            cwd=str(REPO),
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for p in tools
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "usage:" in out, f"{name}: {err[-2000:]}"


def test_every_command_module_is_a_console_script():
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    cli = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "CLI"
    )
    declared = sorted(ast.literal_eval(cli))
    modules = sorted(p.stem for p in (REPO / "salfmix" / "cli").glob("*.py") if p.stem != "__init__")
    assert declared == modules
    for name in modules:
        module = __import__(f"salfmix.cli.{name}", fromlist=["get_parser", "main", "run"])
        assert callable(module.get_parser) and callable(module.main) and callable(module.run), name


def _copy_checkout(dest: Path) -> Path:
    """A copy of the tracked (and untracked, not ignored) files of the checkout at ``dest``."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(module_tmp: Path) -> Path:
    out = module_tmp / "wheel"
    out.mkdir()
    # Built from a copy: the build must not write into the checkout (build/, *.egg-info).
    build = _copy_checkout(module_tmp / "build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(build)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("salfmix-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_installs_three_top_level_packages_and_the_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "pretrain",
        "detection",
        "salfmix",
    }
    shipped = sorted(n for n in names if n.startswith("salfmix/configs/") and n.endswith(".yaml"))
    checkout = sorted(f"salfmix/configs/{p.relative_to(REPO / 'configs')}" for p in (REPO / "configs").rglob("*.yaml"))
    assert shipped == checkout and "salfmix/install/gpu_requirements.txt" in names


def _train_one_epoch(work: Path, env: dict, method: str, *opts: str) -> subprocess.CompletedProcess:
    """Generated TinyImageNet in ``work/data``, then one epoch of ``method`` (with ``opts``) into
    ``work/out``, by module name: whatever ``env``'s PYTHONPATH holds is what runs."""
    demo = ["--out", "data", "--datasets", "tinyimagenet", "--classes", "3", "--train-per-class", "4"]
    subprocess.run(
        [sys.executable, "-m", "salfmix.cli.make_demo_data", *demo, "--val-per-class", "2"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )
    config = [
        "--config-file",
        "pretrain/Base-Demo-R50.yaml",
        "MIX.METHOD",
        method,
        "DATA.ROOT",
        "data/tiny-imagenet-200",
    ]
    small = "OUTPUT_DIR out SOLVER.MAX_EPOCHS 1 SOLVER.BATCH_SIZE 4 MODEL.INPUT_SIZE 32 TRAIN.PROGRESS False"
    return subprocess.run(
        [sys.executable, "-m", "salfmix.cli.pretrain", *config, *small.split(), "TEST.BATCH_SIZE", "4", *opts],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_the_installed_wheel_runs_without_the_checkout(wheel, tmp_path):
    """The wheel's files alone (no checkout on sys.path) find their configs and run a pretraining."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "empty"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = (
        "import pretrain, detection, salfmix, salfmix.config_files as c; "
        "print(pretrain.__file__, detection.__file__, salfmix.__file__, c.config_path('pretrain/Base-Demo-R50.yaml'))"
    )
    paths = subprocess.run(
        [sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert all(p.startswith(str(site)) for p in paths), paths
    run = _train_one_epoch(work, env, "salfmix", "MIX.START_EPOCH", "1")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (work / "out" / "model_final.pth").is_file()
    manifest = (work / "out" / "run.json").read_text(encoding="utf-8").replace(sys.executable, "PYTHON")
    assert str(REPO) not in manifest, "the run's manifest points into the checkout"


def _recipe_module() -> tuple:
    """The README's example method: (registered name, module source)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Adding a mixing method", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    return re.search(r'@register\("(\w+)"\)', code).group(1), code


@pytest.mark.slow
def test_a_new_method_is_one_module(tmp_path):
    """The README's recipe, followed to the letter in a copy of the checkout: the generic mixing,
    config and host-synchronisation tests select the new method and pass, and it trains."""
    name, code = _recipe_module()
    copy = _copy_checkout(tmp_path / "src")
    (copy / "pretrain" / "mixing" / f"{name}.py").write_text(code, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(copy))  # the copy, not the checkout this package is installed from
    tests = ["tests/pretrain/mixing", "tests/pretrain/test_config.py", "tests/pretrain/engine/test_host_syncs.py"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", name, *tests],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", run.stdout).group(1))
    assert passed >= 15, run.stdout[-1000:]  # the generic tests did select it
    work = tmp_path / "work"
    work.mkdir()
    train = _train_one_epoch(work, env, name)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    assert f"METHOD: {name}" in (work / "out" / "config.yaml").read_text(encoding="utf-8")
