#!/usr/bin/env python
"""Benchmark the pretraining step and the data path.

Prints ``BENCH <name> <value>`` lines:
- ``hybridmix_v3_step_ratio_fresh``: a training step with HybridMix v3 and a fresh saliency pass,
  over a baseline step (no mixing); ``hybridmix_v3_step_ratio_cached``: the same with cached
  saliency. Same model, batch and input size, same run.
- ``loader_speedup_vs_imagefolder``: images/s of the packed cache + batched device augmentation
  over torchvision's ImageFolder + PIL transforms (2 workers), same batch and output size.
The data is the generated demo data (written to --data if missing).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="output/bench/data", help="demo data folder (generated if missing)")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--batch", type=int, default=64, help="training batch for the step ratios")
    p.add_argument("--size", type=int, default=64, help="training input side")
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    p.add_argument("--loader-batch", type=int, default=128)
    p.add_argument("--loader-batches", type=int, default=8)
    p.add_argument("--skip-loader", action="store_true")
    return p


def step_time(method: str, saliency: str, args: argparse.Namespace, tiny: str, out: str) -> float:
    """Median seconds of one training step of ``method`` on a fixed batch."""
    from pretrain.config import load_config
    from pretrain.engine.trainer import Trainer

    here = os.path.dirname(os.path.abspath(__file__))
    cfg = load_config(os.path.join(here, "..", "configs", "pretrain", "Base-Demo-R50.yaml"), [
        "DATA.ROOT", tiny, "OUTPUT_DIR", os.path.join(out, f"{method}_{saliency}"), "MODEL.ARCH", args.arch,
        "MODEL.INPUT_SIZE", str(args.size), "SOLVER.BATCH_SIZE", str(args.batch), "MIX.METHOD", method,
        "MIX.SALIENCY", saliency, "MIX.START_EPOCH", "1", "DATA.CACHE_DIR", os.path.join(out, "cache"),
    ])
    trainer = Trainer(cfg)
    trainer.model.train()
    images, targets, indices = next(iter(trainer.data.train_loader))
    if trainer.cache is not None:  # a filled cache, as after the first epoch
        trainer.train_step(images, targets, indices, epoch=1)
    times = []
    for i in range(args.steps + 1):
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.train_step(images, targets, indices, epoch=2)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(args: argparse.Namespace) -> Dict[str, float]:
    """Run the measures, print BENCH lines, return them."""
    from pretrain.data.bench import loader_throughput
    from pretrain.data.demo import write_demo_data

    tiny = os.path.join(args.data, "tiny-imagenet-200")
    if not os.path.isdir(tiny):
        write_demo_data(args.data)
    results: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as out:
        base = step_time("none", "fresh", args, tiny, out)
        results["baseline_step_ms"] = base * 1e3
        results["hybridmix_v3_step_ratio_fresh"] = step_time("hybridmix_v3", "fresh", args, tiny, out) / base
        results["hybridmix_v3_step_ratio_cached"] = step_time("hybridmix_v3", "cached", args, tiny, out) / base
    if not args.skip_loader:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        loader = loader_throughput(tiny, args.loader_batch, args.loader_batches, args.size, device)
        results.update({k: float(v) for k, v in loader.items()})
    for key, value in results.items():
        print(f"BENCH {key} {value:.4g}")
    return results


if __name__ == "__main__":
    main(get_parser().parse_args())
