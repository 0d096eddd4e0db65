"""Install Detectron2 0.6 into the running Python environment, if it is not there yet.

Usage::

    salfmix-install-detectron2 [--force] [--sdist PATH]    (= python -m salfmix.install.detectron2)

OpenCV first: Detectron2 imports ``cv2``, so where no OpenCV imports, opencv-python-headless is
installed (an existing one is kept). If ``import detectron2`` already works in this interpreter
(for example a CUDA build the user made from Detectron2's own source), nothing is done. Otherwise
the script builds Detectron2 0.6 from the ``pb1-detectron2==0.6`` source distribution, the only
Detectron2 0.6 release on the package index, after fixing its two packaging defects:

1. the sdist ships no C++ sources but its ``setup.py`` builds ``detectron2._C``: a minimal
   ``detectron2/layers/csrc/vision.cpp`` (version queries only, see ``VISION_CPP``) is added;
2. ``setup.py`` packages the model-zoo YAML files from ``./configs`` while the sdist keeps them
   in ``detectron2/model_zoo/configs``: that folder is moved to ``./configs``.

The sdist is fetched with pip only (``pip download``, under ``--require-hashes``), and its
sha256 is checked again before anything is unpacked. The ``setup.py`` imports torch, so torch
must be installed first and pip runs with ``--no-build-isolation``. Building needs a C++
compiler (the extension itself compiles in about 10 s). Only the standard library is used here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

PACKAGE_NAME = "pb1-detectron2"
PACKAGE_VERSION = "0.6"
SDIST_NAME = f"{PACKAGE_NAME}-{PACKAGE_VERSION}.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
CHECK_CONFIG = "PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml"
OPENCV = "opencv-python-headless>=4.9"

# The whole of the fallback ``detectron2._C``: only the three functions that
# ``detectron2.utils.collect_env`` calls. It holds no operators, so ``has_cuda`` is false and
# the rotated-box ops, deformable convolution and the fast COCO evaluator are unavailable.
VISION_CPP = r"""// Minimal detectron2._C written by salfmix.install.detectron2.
// The pb1-detectron2 0.6 sdist ships no C++ sources; this module provides only the version
// queries used by detectron2.utils.collect_env. No custom operators are compiled, so only
// pybind11 (shipped with torch) is included: this compiles in seconds, torch's headers do not.
#include <pybind11/pybind11.h>

#include <sstream>
#include <string>

namespace detectron2 {

std::string get_compiler_version() {
  std::ostringstream ss;
#if defined(__clang__)
  ss << "clang " << __clang_major__ << "." << __clang_minor__ << "."
     << __clang_patchlevel__;
#elif defined(__GNUC__)
  ss << "GCC " << __GNUC__ << "." << __GNUC_MINOR__ << "." << __GNUC_PATCHLEVEL__;
#elif defined(_MSC_VER)
  ss << "MSVC " << _MSC_FULL_VER;
#else
  ss << "unknown";
#endif
  return ss.str();
}

std::string get_cuda_version() {
  return "not available (fallback build without CUDA operators)";
}

bool has_cuda() {
  return false;
}

}  // namespace detectron2

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("get_compiler_version", &detectron2::get_compiler_version,
        "compiler used to build this module");
  m.def("get_cuda_version", &detectron2::get_cuda_version,
        "CUDA version this module was built with");
  m.def("has_cuda", &detectron2::has_cuda, "whether this module has CUDA operators");
}
"""

# Run in a fresh interpreter after installing: the project's compatibility module first, then
# the parts of Detectron2 the project uses, then the model-zoo config it starts from.
CHECK_CODE = f"""
import os, sys
import detection.compat  # noqa: F401
import detectron2.layers, detectron2.evaluation, detectron2.modeling  # noqa: F401
from detectron2 import model_zoo
path = model_zoo.get_config_file({CHECK_CONFIG!r})
assert os.path.isfile(path), path
print(path)
"""


class InstallError(RuntimeError):
    """A step of the installation failed; the message's first line says which and why."""


def get_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        description="Install Detectron2 0.6 (from the pb1-detectron2 sdist) unless "
        "'import detectron2' already works in this interpreter."
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="build and install even if detectron2 is already importable (its files are replaced)",
    )
    parser.add_argument(
        "--sdist",
        type=Path,
        default=None,
        help=f"use this already downloaded {SDIST_NAME} instead of downloading it (its sha256 is still checked)",
    )
    return parser


def sha256_of(path: Path) -> str:
    """Return the hex sha256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str = SDIST_SHA256) -> None:
    """Raise ``InstallError`` unless the file at ``path`` has the sha256 ``expected``."""
    actual = sha256_of(path)
    if actual != expected.lower():
        raise InstallError(f"refusing {path.name}: sha256 is {actual}, expected {expected}")


def run_command(cmd: Sequence[str], what: str, env: dict[str, str] | None = None) -> str:
    """Run ``cmd``, return its combined output; raise ``InstallError`` if it fails."""
    proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise InstallError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def detectron2_importable() -> bool:
    """Whether ``import detectron2`` works in a fresh process of this interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", "import detectron2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc.returncode == 0


def module_importable(module: str) -> bool:
    """Whether ``import module`` works in a fresh process of this interpreter."""
    return (
        subprocess.run(
            [sys.executable, "-c", f"import {module}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        == 0
    )


def ensure_opencv() -> None:
    """Detectron2's transforms import ``cv2``: install OpenCV (headless) where none imports. An
    environment that has one keeps it (a second OpenCV distribution beside it breaks ``import
    cv2``), which is why the package does not require a particular one."""
    if module_importable("cv2"):
        return
    print(f"no OpenCV importable: installing {OPENCV} with pip ...", flush=True)
    run_command(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", OPENCV], f"pip install {OPENCV}"
    )


def check_prerequisites() -> None:
    """Fail early, with a clear message, if torch or a C++ compiler is missing."""
    proc = subprocess.run(
        [sys.executable, "-c", "import torch, setuptools"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise InstallError("torch and setuptools must be installed first (Detectron2's setup.py imports torch)")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler.split()[0]) is None:
        raise InstallError(f"no C++ compiler found ({compiler!r}); install g++ or set CXX")


def download_sdist(dest: Path) -> Path:
    """Download the sdist into ``dest`` with pip, pip itself checking the hash; return it."""
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{PACKAGE_NAME}=={PACKAGE_VERSION} --hash=sha256:{SDIST_SHA256}\n")
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
        "--require-hashes", "-r", str(requirements), "-d", str(dest),
    ]  # fmt: skip
    try:
        run_command(cmd, "pip download")
    except InstallError as err:
        if "DO NOT MATCH THE HASHES" in str(err):
            raise InstallError(
                f"refusing {SDIST_NAME}: the downloaded file does not have sha256 {SDIST_SHA256}"
            ) from None
        raise
    found = sorted(dest.glob(f"{PACKAGE_NAME}-{PACKAGE_VERSION}.*")) + sorted(
        dest.glob(f"{PACKAGE_NAME.replace('-', '_')}-{PACKAGE_VERSION}.*")
    )
    if not found:
        raise InstallError(f"pip download did not produce {SDIST_NAME} in {dest}")
    return found[0]


def unpack_sdist(sdist: Path, dest: Path) -> Path:
    """Unpack the sdist into ``dest`` and return its top-level source folder."""
    with tarfile.open(sdist, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python without extraction filters: reject unsafe member names ourselves
            for member in tar.getmembers():
                name = Path(member.name)
                if name.is_absolute() or ".." in name.parts or member.issym() or member.islnk():
                    raise InstallError(f"refusing {sdist.name}: unsafe member {member.name}")
            tar.extractall(dest)
    roots = [p for p in dest.iterdir() if (p / "setup.py").is_file()]
    if len(roots) != 1:
        raise InstallError(f"{sdist.name} does not unpack to one folder with a setup.py")
    return roots[0]


def patch_source(src: Path) -> None:
    """Fix the sdist's two packaging defects in the unpacked tree ``src`` (idempotent)."""
    csrc = src / "detectron2" / "layers" / "csrc"
    csrc.mkdir(parents=True, exist_ok=True)
    (csrc / "vision.cpp").write_text(VISION_CPP)

    zoo_configs = src / "detectron2" / "model_zoo" / "configs"
    top_configs = src / "configs"
    if not top_configs.is_dir():
        if not zoo_configs.is_dir() or zoo_configs.is_symlink():
            raise InstallError("the sdist has no detectron2/model_zoo/configs folder to move")
        shutil.move(str(zoo_configs), str(top_configs))
    if not (top_configs / CHECK_CONFIG).is_file():
        raise InstallError(f"the sdist's model-zoo configs lack {CHECK_CONFIG}")


def pip_install(src: Path) -> None:
    """Build and install the patched source tree with pip (no build isolation)."""
    env = dict(os.environ)
    # The extension holds no CUDA code: hide GPUs from setup.py so it builds a plain C++
    # extension and never needs nvcc, even on a CUDA machine.
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("FORCE_CUDA", None)
    cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", str(src)]
    run_command(cmd, "pip install of the patched Detectron2 source", env=env)


def verify_install() -> str:
    """Import what the project needs in a fresh process; return the checked config path."""
    proc = subprocess.run(
        [sys.executable, "-c", CHECK_CODE],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=None,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise InstallError(f"Detectron2 was installed but does not import correctly:\n{tail}")
    return proc.stdout.strip().splitlines()[-1]


def install(sdist: Path | None = None) -> str:
    """Fetch (unless ``sdist`` is given), check, patch, install, verify; return the config path."""
    if sdist is not None:
        if not sdist.is_file():
            raise InstallError(f"no such file: {sdist}")
        verify_sha256(sdist)
    check_prerequisites()
    with tempfile.TemporaryDirectory(prefix="detectron2-build-") as tmp:
        work = Path(tmp)
        if sdist is None:
            print(f"Downloading {PACKAGE_NAME}=={PACKAGE_VERSION} (sdist) with pip ...", flush=True)
            sdist = download_sdist(work)
            verify_sha256(sdist)
        print(f"sha256 OK: {sdist.name}", flush=True)
        src = unpack_sdist(sdist, work / "src")
        patch_source(src)
        print("Building and installing (needs a C++ compiler) ...", flush=True)
        pip_install(src)
    return verify_install()


def main(args: argparse.Namespace) -> int:
    """Install Detectron2 (and OpenCV, which it imports, where none is) unless it is importable;
    return a process exit code."""
    try:
        ensure_opencv()
    except InstallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not args.force and detectron2_importable():
        print("detectron2 is already importable in this interpreter; nothing to do.")
        return 0
    try:
        config = install(args.sdist)
    except InstallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Detectron2 installed and checked (model-zoo config: {config}).")
    return 0


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    sys.exit(main(get_parser().parse_args(argv)))


if __name__ == "__main__":
    run()
