#!/usr/bin/env python
"""Benchmark the pretraining step and the data path.

Prints ``BENCH <name> <value>`` lines:
- ``hybridmix_v3_step_ratio_fresh``: a training step with HybridMix v3 and a fresh saliency pass,
  over a baseline step (no mixing); ``hybridmix_v3_step_ratio_cached``: the same with cached
  saliency. Same model, batch and input size, same run: the three variants are timed in turns on
  one batch (median of ``--steps`` rounds), so a change in machine load hits them alike.
  ``baseline_step_ms`` is the baseline step itself.
- ``loader_speedup_vs_imagefolder``: images/s of the packed cache + batched device augmentation
  over torchvision's ImageFolder + PIL transforms (``--loader-workers`` workers), same batch and
  output size; ``ours_images_per_s`` and ``imagefolder_images_per_s`` are the two rates (medians
  of ``--loader-repeats`` measures).
The data is the generated demo data in TinyImageNet layout (written to --data if missing).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# (name, MIX.METHOD, MIX.SALIENCY) of the timed variants; the first is the baseline.
VARIANTS = [("baseline", "none", "fresh"), ("fresh", "hybridmix_v3", "fresh"), ("cached", "hybridmix_v3", "cached")]


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="output/bench/data", help="demo data folder (generated if missing)")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--batch", type=int, default=32, help="training batch for the step ratios")
    p.add_argument("--size", type=int, default=64, help="training input side")
    p.add_argument("--steps", type=int, default=5, help="timed rounds over the variants (after one warm-up round)")
    p.add_argument("--loader-batch", type=int, default=128)
    p.add_argument("--loader-batches", type=int, default=8)
    p.add_argument("--loader-workers", type=int, default=2, help="ImageFolder DataLoader workers")
    p.add_argument("--loader-repeats", type=int, default=3, help="loader measures (the medians are reported)")
    p.add_argument("--skip-loader", action="store_true")
    return p


def median(values: List[float]) -> float:
    """The middle value (the upper one of an even count)."""
    return sorted(values)[len(values) // 2]


def make_trainer(method: str, saliency: str, args: argparse.Namespace, tiny: str, out: str):
    """A trainer on the demo data for ``method`` / ``saliency``, mixing from epoch 1."""
    from pretrain.config import load_config
    from pretrain.engine.trainer import Trainer

    cfg = load_config(os.path.join(HERE, "..", "configs", "pretrain", "Base-Demo-R50.yaml"), [
        "DATA.ROOT", tiny, "OUTPUT_DIR", os.path.join(out, f"{method}_{saliency}"), "MODEL.ARCH", args.arch,
        "MODEL.INPUT_SIZE", str(args.size), "SOLVER.BATCH_SIZE", str(args.batch), "MIX.METHOD", method,
        "MIX.SALIENCY", saliency, "MIX.START_EPOCH", "1",
    ])
    trainer = Trainer(cfg)
    trainer.model.train()
    return trainer


def step_times(args: argparse.Namespace, tiny: str, out: str) -> Dict[str, float]:
    """Median seconds of one training step of each variant, all on the same batch, timed in turns."""
    trainers = {}
    for name, method, saliency in VARIANTS:
        trainers[name] = make_trainer(method, saliency, args, tiny, out)
        num = len(trainers[name].data.train)
        if num < args.batch:
            raise SystemExit(f"error: {tiny} has {num} training images, fewer than --batch {args.batch}")
    first = trainers["baseline"]
    images, targets, indices = next(iter(first.data.train_loader))
    sync = torch.cuda.synchronize if first.device.type == "cuda" else (lambda: None)
    # Epoch 1 is a warm-up round; it also fills the cache for these samples, as after a first epoch.
    times: Dict[str, List[float]] = {name: [] for name in trainers}
    for round_ in range(args.steps + 1):
        for name, trainer in trainers.items():
            sync()
            t0 = time.perf_counter()
            trainer.train_step(images, targets, indices, epoch=1 if round_ == 0 else 2)
            sync()
            if round_:
                times[name].append(time.perf_counter() - t0)
    cached = trainers["cached"].cache
    assert cached is not None and cached.lookup(indices.to(cached.maps.device), args.size, args.size) is not None
    return {name: median(t) for name, t in times.items()}


def main(args: argparse.Namespace) -> Dict[str, float]:
    """Run the measures, print BENCH lines, return them."""
    from pretrain.data.bench import loader_throughput
    from pretrain.data.demo import write_demo_data

    tiny = os.path.join(args.data, "tiny-imagenet-200")
    if not os.path.isdir(tiny):
        write_demo_data(args.data, datasets=("tinyimagenet",))
    results: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as out:
        times = step_times(args, tiny, out)
    results["baseline_step_ms"] = times["baseline"] * 1e3
    results["hybridmix_v3_step_ratio_fresh"] = times["fresh"] / times["baseline"]
    results["hybridmix_v3_step_ratio_cached"] = times["cached"] / times["baseline"]
    settings = {"arch": args.arch, "batch": args.batch, "size": args.size, "steps": args.steps,
                "threads": torch.get_num_threads()}
    if not args.skip_loader:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # Each call times our path, then ImageFolder's; a few short calls in turns, and the median
        # of each rate and of the speedup, keep a change in machine load from favouring one path.
        runs = [loader_throughput(tiny, args.loader_batch, args.loader_batches, args.size, device,
                                  num_workers=args.loader_workers) for _ in range(args.loader_repeats)]
        for key in ("ours_images_per_s", "imagefolder_images_per_s", "loader_speedup_vs_imagefolder"):
            results[key] = median([float(run[key]) for run in runs])
        settings.update({f"loader_{k}": runs[0][k] for k in ("batch_size", "num_batches", "imagefolder_workers",
                                                               "train_images", "malloc_tuned")})
        settings["loader_repeats"] = args.loader_repeats
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    for key, value in results.items():
        print(f"BENCH {key} {value:.4g}")
    return results


if __name__ == "__main__":
    main(get_parser().parse_args())
