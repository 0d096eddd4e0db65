"""Benchmark the mixing library on the CPU (or GPU with --device cuda).

Prints one ``BENCH <name> <value>`` line per measure:
- ``salfmix_speedup_vs_loop``: batched SalfMix against the per-sample loop of Algorithm 2
  (B=128, 64x64, n=8, r=0.3), same machine, same run.
- ``r50_step_ms``: one ResNet-50 forward+backward on the same batch, and for each mixer
  ``<name>_rel_r50_step``: its cost (saliency given) relative to that step; ``saliency_rel_r50_step``
  is the cost of one ``gradient_saliency`` pass.
Mixers are timed as a training step runs them: ``mixer.apply(..., mixer.draw(...))``.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision

from pretrain.mixing import MIXERS, make_mixer
from pretrain.mixing.saliency import gradient_saliency


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--r", type=float, default=0.3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of the fast operations")
    return p


def salfmix_loop(images: torch.Tensor, saliency: torch.Tensor, n: int, r: float, rng: random.Random) -> torch.Tensor:
    """The straightforward implementation: Algorithm 1 applied image by image."""
    out = images.clone()
    _, _, h, w = images.shape
    k, o = h // n, int(w * r)
    for i in range(images.shape[0]):
        pooled = F.avg_pool2d(saliency[i][None, None], k, stride=k)[0, 0]
        cols = pooled.shape[1]
        starts = []
        for flat in (int(pooled.argmax()), int(pooled.argmin())):
            cy, cx = (flat // cols) * k, (flat % cols) * k
            lo_y, hi_y = max(0, min(cy, cy + k - o)), min(h - o, max(cy, cy + k - o))
            lo_x, hi_x = max(0, min(cx, cx + k - o)), min(w - o, max(cx, cx + k - o))
            starts.append((rng.randint(lo_y, hi_y), rng.randint(lo_x, hi_x)))
        (ym, xm), (yl, xl) = starts
        out[i, :, yl : yl + o, xl : xl + o] = images[i, :, ym : ym + o, xm : xm + o]
    return out


def timeit(fn: Callable[[], object], repeats: int, device: str) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(args: argparse.Namespace) -> dict[str, float]:
    """Run the measures, print BENCH lines, return them."""
    torch.manual_seed(0)
    dev = args.device
    images = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    targets = torch.randint(200, (args.batch,), device=dev)
    model = torchvision.models.resnet50(num_classes=200).to(dev)
    saliency = gradient_saliency(model, images, targets)
    results: dict[str, float] = {}

    # What a training step runs: the host draws and the device work (no input checks, no read-back).
    batched = make_mixer("salfmix", n=args.n, r=args.r, seed=0)
    fast = timeit(
        lambda: batched.apply(images, targets, saliency, batched.draw(images.shape, images.device)), args.repeats, dev
    )
    slow = timeit(lambda: salfmix_loop(images, saliency, args.n, args.r, random.Random(0)), 2, dev)
    results["salfmix_batched_ms"] = fast * 1e3
    results["salfmix_loop_ms"] = slow * 1e3
    results["salfmix_speedup_vs_loop"] = slow / fast

    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), targets).backward()

    model.train()
    r50 = timeit(step, 2, dev)
    results["r50_step_ms"] = r50 * 1e3
    results["saliency_rel_r50_step"] = timeit(lambda: gradient_saliency(model, images, targets), 2, dev) / r50
    for name in MIXERS:
        takes_n = "n" in MIXERS[name].config_keys
        mixer = make_mixer(name, **({"n": args.n} if takes_n else {}))
        sal = saliency if mixer.needs_saliency else None
        if getattr(mixer, "saliency_reduction", "max") != "max":
            sal = gradient_saliency(model, images, targets, mixer.saliency_reduction)
        try:
            cost = timeit(
                lambda mixer=mixer, sal=sal: mixer.apply(images, targets, sal, mixer.draw(images.shape, images.device)),
                2 if name == "puzzlemix" else args.repeats,
                dev,
            )
        except ImportError as err:  # an optional dependency (gco for PuzzleMix)
            print(f"{name}: left out ({err})")
            continue
        results[f"{name}_rel_r50_step"] = cost / r50
    for key, value in results.items():
        print(f"BENCH {key} {value:.4g}")
    return results


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
