"""Training throughput of the pretraining model: fp32 against bf16 + channels_last, and compiled.

Prints ``BENCH <name> <value>`` lines as each measure finishes (a run stopped at its time limit
keeps the lines already printed):
- ``<arch>_<size>px_images_per_s_fp32``: plain fp32 training steps (torch's default math, so
  cuDNN convolutions may use TF32 on GPUs that have it);
- ``<arch>_<size>px_images_per_s_bf16_cl``: bf16 autocast and channels_last, as ``TRAIN.AMP bf16``
  and ``MODEL.CHANNELS_LAST True`` train; ``<arch>_bf16_cl_speedup_vs_fp32``: their ratio;
- with ``--compile``: ``<arch>_<size>px_images_per_s_bf16_cl_compiled`` (``torch.compile`` of the
  model, same step), ``<arch>_compile_seconds`` (the first compiled steps, compilation included)
  and ``<arch>_compile_speedup_vs_bf16_cl``.
A step is forward, mixed-precision loss, backward and an SGD step (momentum 0.9, weight decay
1e-4) on one random batch already on the device; steps are queued back to back and the device
is synchronised once after the timed ones, as a training loop that never waits would run.
bf16 is skipped on the CPU (the trainer trains in fp32 there).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from pretrain.models import ARCHS, build_arch


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="resnet50", choices=sorted(ARCHS))
    p.add_argument("--classes", type=int, default=200, help="classifier outputs (TinyImageNet: 200)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=64, help="input side (the paper's TinyImageNet setting: 64)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN picks its kernels)")
    p.add_argument("--compile", action="store_true", help="measure torch.compile instead of fp32 / bf16")
    p.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend (inductor: the default one; aot_eager traces without code generation)",
    )
    return p


def train_step(
    model: torch.nn.Module, device: torch.device, batch: int, size: int, classes: int, bf16: bool, channels_last: bool
) -> Callable[[], None]:
    """One training step of ``model`` on a fixed random batch, as a closure."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    y = torch.randint(classes, (batch,), generator=gen).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step() -> None:
        with autocast():
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def sync(device: torch.device) -> None:
    """Wait for the device's queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_s(step: Callable[[], None], device: torch.device, batch: int, steps: int, warmup: int) -> float:
    """Images per second over ``steps`` queued steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def report(results: dict[str, float], key: str, value: float) -> None:
    """Record one measure and print its BENCH line at once."""
    results[key] = value
    print(f"BENCH {key} {value:.4g}", flush=True)


def main(args: argparse.Namespace) -> dict[str, float]:
    """Run the measures, print BENCH lines, return them."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device is available")
    bf16 = device.type == "cuda"
    name, results = f"{args.arch}_{args.size}px", {}
    print(
        f"settings: arch={args.arch}, batch={args.batch}, size={args.size}, steps={args.steps}, "
        f"warmup={args.warmup}, device={device}, torch={torch.__version__}, threads={torch.get_num_threads()}"
        + (f", compile_backend={args.compile_backend}" if args.compile else "")
    )

    def rate(bf16_cl: bool, compiled: bool = False) -> float:
        torch.manual_seed(0)
        model = build_arch(args.arch, args.classes).to(device).train()
        if compiled:
            model = torch.compile(model, backend=args.compile_backend)
        step = train_step(model, device, args.batch, args.size, args.classes, bf16_cl and bf16, bf16_cl)
        if compiled:  # the first steps compile the forward and the backward
            start = time.perf_counter()
            for _ in range(2):
                step()
            sync(device)
            report(results, f"{args.arch}_compile_seconds", time.perf_counter() - start)
        return images_per_s(step, device, args.batch, args.steps, args.warmup)

    if args.compile:
        eager = rate(True)
        report(results, f"{name}_images_per_s_bf16_cl" if bf16 else f"{name}_images_per_s_fp32_cl", eager)
        compiled = rate(True, compiled=True)
        report(results, f"{name}_images_per_s_{'bf16_cl' if bf16 else 'fp32_cl'}_compiled", compiled)
        report(results, f"{args.arch}_compile_speedup_vs_{'bf16_cl' if bf16 else 'fp32_cl'}", compiled / eager)
        return results
    fp32 = rate(False)
    report(results, f"{name}_images_per_s_fp32", fp32)
    if bf16:
        fast = rate(True)
        report(results, f"{name}_images_per_s_bf16_cl", fast)
        report(results, f"{args.arch}_bf16_cl_speedup_vs_fp32", fast / fp32)
    else:
        print("bf16: skipped on the CPU (the trainer trains in fp32 there)")
    return results


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
