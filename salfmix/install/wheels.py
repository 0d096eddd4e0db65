"""The packages a CUDA machine without network needs, as files: download, verify, install.

Usage::

    python -m salfmix.install.wheels download [--dest .wheels]   # here: `make gpu-wheels`
    python -m salfmix.install.wheels verify   [--dest .wheels] [--pip-check]
    python -m salfmix.install.wheels install [--dest .wheels]   # there, with its python
    python -m salfmix.install.wheels preflight [--dest .wheels] # there, first: anything missing?

``download`` fetches every file of ``salfmix/install/gpu_requirements.txt`` for CPython 3.12 on
x86-64 Linux with ``pip download --require-hashes`` (so pip checks each sha256), builds wheels
of the source-only pure-Python packages, and of gco-wrapper when a CPython 3.12 is found here
(``--python312``; else its source travels and is built there), and writes ``SHA256SUMS``.
It needs a Python with torch (Detectron2's setup.py imports it while pip reads its metadata).
``verify`` checks the folder against ``SHA256SUMS`` and that each package is there exactly
once, in a form CPython 3.12 on x86-64 Linux can install (``--pip-check``: pip itself is asked,
in a dry run). ``install`` installs them into the running Python with ``--no-index
--no-deps`` (torch and everything else already there is left alone), builds Detectron2 from
its hash-checked source with ``salfmix.install.detectron2``, and installs this project
(``preflight`` and ``install``, the machine's side, are :mod:`salfmix.install.machine`).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence

# The checkout the kit installs (this file is salfmix/install/wheels.py in it).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_requirements.txt")
MANIFEST = "SHA256SUMS"
DETECTRON2 = "pb1-detectron2"
# Source-only releases: pure Python, built into py3-none-any wheels by any Python here.
PURE_SDISTS = ("fvcore", "antlr4-python3-runtime")
# Source-only with compiled code: built for CPython 3.12 here when one is found, else there.
COMPILED_SDISTS = ("gco-wrapper",)
# Installed only when the module is missing there (Detectron2 0.6 imports pkg_resources).
ONLY_IF_MISSING = {"setuptools": "pkg_resources"}
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64", "any"]


class WheelsError(RuntimeError):
    """A step failed; the message says which file or command and why."""


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("download", "verify", "install", "preflight"))
    p.add_argument("--dest", default=os.path.join(REPO, ".wheels"), help="the folder of the files (default .wheels)")
    p.add_argument(
        "--python312",
        default="",
        help="download: a CPython 3.12 to build gco-wrapper's wheel with "
        "(default: python3.12 on PATH, else pyenv's; none found: its source travels)",
    )
    p.add_argument("--force", action="store_true", help="download: fetch again even if the folder verifies")
    p.add_argument(
        "--pip-check",
        action="store_true",
        help="verify: also ask pip (dry run) to accept each wheel for CPython 3.12 on x86-64 Linux",
    )
    return p


# ---------------------------------------------------------------------------------------------
def normalize(name: str) -> str:
    """A distribution name in canonical form (PEP 503): lower case, runs of -_. become -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: str = REQUIREMENTS) -> dict[str, str]:
    """``{canonical name: pinned version}`` of the requirements file, in file order."""
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, _, rest = line.partition("==")
                pins[normalize(name)] = rest.split()[0] if rest else ""
    return pins


def requirement_names(path: str = REQUIREMENTS) -> list[str]:
    """The canonical names pinned in the requirements file, in file order."""
    return list(requirement_pins(path))


def split_artifact(filename: str) -> tuple[str, str]:
    """``(canonical name, version)`` of a wheel or sdist file name."""
    if filename.endswith(".whl"):
        name, version = filename.split("-")[:2]
        return normalize(name), version
    stem = filename[: -len(".tar.gz")] if filename.endswith(".tar.gz") else os.path.splitext(filename)[0]
    name, _, version = stem.rpartition("-")
    return normalize(name), version


def artifact_name(filename: str) -> str:
    """The canonical distribution name of a wheel or sdist file name."""
    return split_artifact(filename)[0]


def wheel_fits(filename: str) -> bool:
    """Whether a wheel's tags admit CPython 3.12 on x86-64 Linux (glibc)."""
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        return False
    py, abi, plat = parts[-3:]
    py_ok = any(
        t in ("py3", "cp312") or (t.startswith("cp3") and abi == "abi3" and int(t[3:] or 0) <= 12)
        for t in py.split(".")
    )
    abi_ok = any(t in ("none", "abi3", "cp312") for t in abi.split("."))
    plat_ok = any(
        t == "any" or t == "linux_x86_64" or (t.startswith("manylinux") and t.endswith("_x86_64"))
        for t in plat.split(".")
    )
    return py_ok and abi_ok and plat_ok


def sha256_of(path: str) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifacts(dest: str) -> list[str]:
    """The wheel and sdist file names in ``dest``, sorted."""
    return sorted(f for f in os.listdir(dest) if f.endswith((".whl", ".tar.gz")))


def write_manifest(dest: str) -> None:
    """Write ``SHA256SUMS`` (sha256sum's format) for every artifact, atomically."""
    lines = [f"{sha256_of(os.path.join(dest, f))}  {f}\n" for f in artifacts(dest)]
    tmp = os.path.join(dest, f".{MANIFEST}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, os.path.join(dest, MANIFEST))


def run_command(cmd: Sequence[str], what: str, env: dict[str, str] | None = None, cwd: str | None = None) -> str:
    """Run ``cmd``; return its output, or raise WheelsError with the output's tail."""
    proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-20:])
        raise WheelsError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------
def verify(dest: str, pip_check: bool = False) -> list[str]:
    """Check ``dest`` against its manifest and the requirements; return the artifact names."""
    manifest = os.path.join(dest, MANIFEST)
    if not os.path.isfile(manifest):
        raise WheelsError(f"{manifest} not found: run `make gpu-wheels` first")
    listed: dict[str, str] = {}
    with open(manifest, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            found = re.fullmatch(r"([0-9a-f]{64}) [ *](\S+)\n?", line)
            if not found:
                raise WheelsError(f"{manifest}:{n}: expected '<sha256>  <file>'")
            listed[found.group(2)] = found.group(1)
    files = artifacts(dest)
    if sorted(listed) != files:
        extra, missing = sorted(set(files) - set(listed)), sorted(set(listed) - set(files))
        raise WheelsError(f"{dest}: files differ from {MANIFEST} (not listed: {extra}; missing: {missing})")
    for name, digest in listed.items():
        if sha256_of(os.path.join(dest, name)) != digest:
            raise WheelsError(f"{os.path.join(dest, name)}: sha256 differs from {MANIFEST}")
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(artifact_name(f), []).append(f)
    for name, version in requirement_pins().items():
        found = by_name.pop(name, [])
        if len(found) != 1:
            raise WheelsError(f"{dest}: expected one file of {name}, found {found or 'none'}")
        f = found[0]
        if split_artifact(f)[1] != version:
            raise WheelsError(
                f"{dest}/{f}: expected version {version} of {name} (`make gpu-wheels` updates the folder)"
            )
        if f.endswith(".whl") and not wheel_fits(f):
            raise WheelsError(f"{dest}/{f}: not installable by CPython 3.12 on x86-64 Linux")
        if f.endswith(".tar.gz") and name not in (DETECTRON2,) + COMPILED_SDISTS:
            raise WheelsError(f"{dest}/{f}: a source release; `make gpu-wheels` builds a wheel of it")
    if by_name:
        raise WheelsError(f"{dest}: files of packages not in {os.path.basename(REQUIREMENTS)}: {sorted(by_name)}")
    if pip_check:
        wheels = [os.path.join(dest, f) for f in files if f.endswith(".whl")]
        with tempfile.TemporaryDirectory() as target:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--no-index",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--target",
                target,
                *TARGET,
            ]
            cmd += [x for plat in PLATFORMS for x in ("--platform", plat)] + wheels
            run_command(cmd, "pip install --dry-run (CPython 3.12, x86-64 Linux)")
    return files


def find_python312(given: str) -> str | None:
    """A CPython 3.12 interpreter: ``given``, else python3.12 on PATH, else pyenv's; None if none runs."""
    candidates = (
        [given]
        if given
        else ["python3.12"]
        + sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True)
    )
    for exe in candidates:
        try:
            out = subprocess.run(
                [
                    exe,
                    "-c",
                    "import sys, platform; print(platform.python_implementation(), sys.version_info[:2] == (3, 12))",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.split() == ["CPython", "True"]:
            return exe
    if given:
        raise WheelsError(f"--python312 {given}: not a working CPython 3.12")
    return None


def download(dest: str, python312: str = "", force: bool = False) -> list[str]:
    """Fill ``dest`` (see the module docstring); return the artifact names."""
    if not force and os.path.isdir(dest):
        try:
            files = verify(dest)
            print(f"{dest} is complete and verified (--force to fetch again)")
            return files
        except WheelsError:
            pass
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-wheels-") as tmp:
        fetched, built = os.path.join(tmp, "fetched"), os.path.join(tmp, "built")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--require-hashes",
            "--no-build-isolation",
            *TARGET,
            *[x for plat in PLATFORMS for x in ("--platform", plat)],
            "-r",
            REQUIREMENTS,
            "-d",
            fetched,
        ]
        print("pip download (hash-checked) ...", flush=True)
        run_command(cmd, "pip download")
        os.makedirs(built)
        keep = []
        for f in sorted(os.listdir(fetched)):
            path, name = os.path.join(fetched, f), artifact_name(f)
            if name in PURE_SDISTS:
                run_command(
                    [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", built, path],
                    f"building a wheel of {f}",
                )
            elif name in COMPILED_SDISTS:
                exe = find_python312(python312)
                if exe:
                    run_command(
                        [exe, "-m", "pip", "wheel", "--no-deps", "-w", built, path], f"building a cp312 wheel of {f}"
                    )
                else:
                    print(f"no CPython 3.12 here: {f} travels as source and is built on the CUDA machine")
                    keep.append(path)
            else:
                keep.append(path)
        for f in os.listdir(dest):  # replace the folder's artifacts as a whole
            if f.endswith((".whl", ".tar.gz")):
                os.remove(os.path.join(dest, f))
        for path in keep + [os.path.join(built, f) for f in os.listdir(built)]:
            shutil.copy2(path, os.path.join(dest, os.path.basename(path)))
    write_manifest(dest)
    return verify(dest)


def travelling_bytes(repo: str = REPO) -> int | None:
    """Bytes of the repository's tracked and untracked-not-ignored files (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    paths = [os.path.join(repo, p) for p in out.decode().split("\0") if p]
    return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def print_sizes(dest: str, files: list[str]) -> None:
    """The files, their total, and the total that travels with the repository."""
    total = 0
    for f in files:
        size = os.path.getsize(os.path.join(dest, f))
        total += size
        print(f"  {size / 2**20:7.2f} MiB  {f}")
    print(f"wheels: {len(files)} files, {total / 2**20:.2f} MiB in {dest}")
    repo = travelling_bytes()
    if repo is not None:
        print(
            f"repository (tracked + untracked, not ignored): {repo / 2**20:.2f} MiB; "
            f"together: {(repo + total) / 2**20:.2f} MiB (the limit is 64 MiB)"
        )


def main(args: argparse.Namespace) -> int:
    """Run the action; a failure is one message on stderr and exit code 1."""
    from salfmix.install.machine import install, preflight  # the machine side imports this module

    dest = os.path.abspath(args.dest)
    try:
        if args.action == "download":
            print_sizes(dest, download(dest, args.python312, args.force))
        elif args.action == "verify":
            files = verify(dest, args.pip_check)
            print(f"{dest}: {len(files)} files verified" + (" (pip accepts every wheel)" if args.pip_check else ""))
        elif args.action == "preflight":
            missing = preflight(dest)
            for line in missing:
                print(f"error: {line}", file=sys.stderr)
            if missing:
                return 1
            print(f"preflight: every module the kit imports is importable or carried in {dest}")
        else:
            install(dest)
    except WheelsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    sys.exit(main(get_parser().parse_args(argv)))


if __name__ == "__main__":
    run()
