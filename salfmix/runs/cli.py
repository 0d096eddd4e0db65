"""Command lines: flags anywhere among the ``KEY VALUE`` overrides, and the command that resumes a run."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

__all__ = ["flags_anywhere", "resume_command"]


def flags_anywhere(parser: argparse.ArgumentParser, dest: str = "opts") -> argparse.ArgumentParser:
    """Let the flags of ``parser`` come before, between or after the positional ``dest`` words.

    ``argparse.REMAINDER`` (Detectron2's ``opts``) swallows every word after the first override,
    so ``... OUTPUT_DIR out --resume`` made ``--resume`` an override. The positional becomes
    ``nargs="*"`` and ``parse_args`` parses intermixed (a negative number such as ``SEED -1``
    is still a value). Returns the same parser.
    """
    for action in parser._actions:  # argparse has no public way to change an action
        if action.dest == dest and not action.option_strings:
            action.nargs = "*"
            action.default = []
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]
    return parser


def resume_command(
    module: str,
    config_file: str,
    opts: Sequence[str],
    extra: Sequence[str] = (),
    python: str | None = None,
    resume: bool = True,
) -> str:
    """The shell command that continues a run: ``python -m module``, its config, ``extra`` flags,
    the overrides and ``--resume`` (unless ``resume`` is False: the same command again). A module,
    not a file: the command works from any folder, with a checkout or an installed package.

    Under torchrun (``LOCAL_WORLD_SIZE`` set) the command starts with ``torchrun --nproc_per_node N``.
    """
    words = [python or sys.executable, "-m", module, "--config-file", config_file, *extra, *opts]
    words += ["--resume"] if resume else []
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_WORLD_SIZE" in os.environ:
        words = ["torchrun", "--nproc_per_node", os.environ["LOCAL_WORLD_SIZE"], *words[1:]]
    return shlex.join(words)
