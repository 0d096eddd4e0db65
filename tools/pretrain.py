#!/usr/bin/env python
"""Pretrain a classifier with a mixing method (the paper's section 5.1 recipe).

Examples::

    python tools/pretrain.py --config-file configs/pretrain/tinyimagenet_r50_hybridmix_v3.yaml \\
        DATA.ROOT /data/tiny-imagenet-200 OUTPUT_DIR output/r50_hybridmix_v3
    torchrun --nproc_per_node 4 tools/pretrain.py --config-file ... --resume
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pretrain.config import load_config  # noqa: E402
from pretrain.engine.checkpoint import last_checkpoint  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="a YAML config (with _BASE_ inheritance)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT_DIR")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs overriding the config")
    return p


def main(args: argparse.Namespace) -> Dict[str, float]:
    """Train; returns the final epoch's metrics. Exits with a one-line message on bad input."""
    from pretrain.engine.trainer import NonFiniteLossError, Trainer

    try:
        cfg = load_config(args.config_file, args.opts)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}")
    if not args.resume and last_checkpoint(cfg.OUTPUT_DIR) is not None:
        raise SystemExit(f"error: {cfg.OUTPUT_DIR} already holds checkpoints: pass --resume, or another OUTPUT_DIR")
    try:
        trainer = Trainer(cfg)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}")
    if args.resume:
        try:
            path = trainer.resume()
        except (ValueError, KeyError, RuntimeError, EOFError) as err:
            raise SystemExit(f"error: --resume: {err}")
        if trainer.rank == 0:
            print(f"resuming from {path} (epoch {trainer.start_epoch})" if path else "no checkpoint found: starting")
    try:
        record = trainer.train()
    except NonFiniteLossError as err:
        raise SystemExit(f"error: {err}")
    if trainer.rank == 0 and record:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in record.items())
        print(f"done: {shown}; weights in {os.path.join(cfg.OUTPUT_DIR, 'model_final.pth')}")
    return record


if __name__ == "__main__":
    main(get_parser().parse_args())
