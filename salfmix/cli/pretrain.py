"""Pretrain a classifier with a mixing method (the paper's section 5.1 recipe).

Examples::

    python -m salfmix.cli.pretrain --config-file pretrain/Base-TinyImageNet-R50.yaml MIX.METHOD hybridmix_v3 \\
        DATA.ROOT /data/tiny-imagenet-200 OUTPUT_DIR output/r50_hybridmix_v3
    torchrun --nproc_per_node 4 -m salfmix.cli.pretrain --config-file ... OUTPUT_DIR ... --resume

Flags may come anywhere among the KEY VALUE overrides. A run folder is locked while a run uses
it, never overwritten once finished, and resumed only with the same config (see pretrain/README.md).
Ctrl-C (or SIGTERM) stops at the end of the current step and prints the command that resumes.
"""

from __future__ import annotations

import argparse
import os
import sys

from pretrain.config import load_config
from salfmix.errors import RunError
from salfmix.runs.cli import flags_anywhere, resume_command
from salfmix.runs.signals import Interrupted


def get_parser() -> argparse.ArgumentParser:
    """Command-line options (flags anywhere: ``... OUTPUT_DIR out --resume`` works)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="a YAML config (with _BASE_ inheritance)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT_DIR")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="pairs overriding the config")
    return flags_anywhere(p)


def main(args: argparse.Namespace) -> dict[str, float]:
    """Train; returns the final epoch's metrics. Exits with a one-line message on bad input,
    and with status 130 / 143 (one line naming the resume command) on SIGINT / SIGTERM."""
    from pretrain.engine.runner import run_pretraining
    from pretrain.engine.trainer import NonFiniteLossError
    from salfmix.distributed import leaving_process_group

    try:
        cfg = load_config(args.config_file, args.opts)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    again = resume_command("salfmix.cli.pretrain", args.config_file, args.opts)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    try:
        with leaving_process_group():
            result = run_pretraining(cfg, resume=args.resume, resume_cmd=again)
    except Interrupted as stop:
        if main_rank:
            print(f"{stop}; resume with: {again}", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    except (RunError, ValueError, FileNotFoundError, NonFiniteLossError) as err:
        raise SystemExit(f"error: {err}") from None
    if not main_rank:
        return result.record
    if result.status == "already finished":
        print(f"{cfg.OUTPUT_DIR}: the run is already finished (model_final.pth); nothing to do")
        return result.record
    if result.record:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in result.record.items())
        print(f"done: {shown}; weights in {os.path.join(cfg.OUTPUT_DIR, 'model_final.pth')}")
    return result.record


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
