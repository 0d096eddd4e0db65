"""The GPU machine's side of the offline kit (:mod:`salfmix.install.wheels`): ``preflight`` says
which module the kit imports is neither importable nor carried, ``install`` installs the carried,
verified files into the running Python, then Detectron2 and this project."""

from __future__ import annotations

import os
import subprocess
import sys

from salfmix.install.wheels import (
    COMPILED_SDISTS,
    DETECTRON2,
    ONLY_IF_MISSING,
    REPO,
    artifact_name,
    artifacts,
    normalize,
    run_command,
    verify,
)


def importable(module: str) -> bool:
    """Whether ``import module`` works in a fresh process of this interpreter."""
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


# Every module the kit's steps import, with the distribution that provides it. "machine": must be
# on the GPU machine's Python already (the kit never installs torch and its stack); otherwise the
# distribution travels in .wheels/ (salfmix/install/gpu_requirements.txt).
MODULES = (
    ("torch", "machine"),
    ("torchvision", "machine"),
    ("numpy", "machine"),
    ("PIL", "machine"),
    ("matplotlib", "machine"),
    ("tqdm", "machine"),
    ("tensorboard", "machine"),
    ("scipy", "machine"),
    ("pytest", "machine"),
    ("yaml", "machine"),
    ("tabulate", "machine"),
    ("cloudpickle", "machine"),
    ("portalocker", "machine"),
    ("cv2", "machine"),
    ("fvcore", "fvcore"),
    ("iopath", "iopath"),
    ("yacs", "yacs"),
    ("termcolor", "termcolor"),
    ("omegaconf", "omegaconf"),
    ("hydra", "hydra-core"),
    ("antlr4", "antlr4-python3-runtime"),
    ("pycocotools", "pycocotools"),
    ("gco", "gco-wrapper"),
    ("pkg_resources", "setuptools"),
    ("detectron2", DETECTRON2),
)


def preflight(dest: str) -> list[str]:
    """One line per module the kit will import that is neither importable here nor provided by a
    file in ``dest``: which module, and which wheel to carry (empty: nothing is missing)."""
    have = {artifact_name(f) for f in artifacts(dest)} if os.path.isdir(dest) else set()
    # One fresh interpreter tries every import (one process per module would cost ~20 s).
    probe = (
        "import importlib, sys\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m)\n"
        "    except Exception:\n        print(m)"
    )
    proc = subprocess.run([sys.executable, "-c", probe, *(m for m, _ in MODULES)], capture_output=True, text=True)
    absent = set(proc.stdout.split())
    missing = []
    for module, dist in MODULES:
        if module not in absent:
            continue
        if dist == "machine":
            missing.append(
                f"module {module} cannot be imported and the kit does not carry it: install it into "
                f"{sys.executable} on this machine (the kit leaves torch and its stack as they are)"
            )
        elif normalize(dist) not in have:
            missing.append(
                f"module {module} cannot be imported and {dest} has no {dist}: run `make gpu-wheels` on a "
                "machine with network and carry .wheels/ here"
            )
    return missing


def install(dest: str) -> None:
    """Install the verified files into this interpreter, then Detectron2 and the project."""
    files = verify(dest)
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-deps",
        "--no-build-isolation",
        "--disable-pip-version-check",
        "--no-cache-dir",
    ]
    wheels, skipped = [], []
    for f in files:
        if not f.endswith(".whl"):
            continue
        module = ONLY_IF_MISSING.get(artifact_name(f))
        (skipped if module and importable(module) else wheels).append(f)
    print(
        f"installing {len(wheels)} wheels (--no-index --no-deps); already satisfied here: {skipped or 'none'}",
        flush=True,
    )
    run_command(pip + [os.path.join(dest, f) for f in wheels], "pip install of the wheels")
    for f in files:
        if f.endswith(".tar.gz") and artifact_name(f) in COMPILED_SDISTS:
            print(f"building {f} ...", flush=True)
            run_command(pip + [os.path.join(dest, f)], f"pip install of {f}")
    sdist = [f for f in files if artifact_name(f) == DETECTRON2]
    print("Detectron2 from its source release ...", flush=True)
    # salfmix.install.detectron2 runs `pip install` of the patched source: no index there, and its
    # declared dependencies are either installed above or unused by the project (black, pydot).
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_NO_DEPS="1")
    tool = [sys.executable, "-m", "salfmix.install.detectron2", "--sdist", os.path.join(dest, sdist[0])]
    print(run_command(tool, "python -m salfmix.install.detectron2", env=env).strip().splitlines()[-1], flush=True)
    print("the project (editable, no dependencies) ...", flush=True)
    run_command(pip + ["-e", REPO], "pip install -e of the project")
    check = (
        "import torch, pretrain.mixing, detection, detectron2; print('torch', torch.__version__, "
        "'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    )
    print(run_command([sys.executable, "-c", check], "importing the project", cwd=dest).strip().splitlines()[-1])
