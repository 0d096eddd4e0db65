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

Optional measures:
- ``--methods M ...``: each method also timed with fresh saliency, in the same turns:
  ``step_ms_<method>``; with ``--project-epochs E``, ``projected_<E>ep_hours_<method>``: that step
  time x (``--project-train-images`` // batch) steps x E epochs, on this one device (evaluation
  and data loading not counted). A method that fails here (e.g. PuzzleMix without gco) is
  reported and left out.
- ``--suspects``: what a training step pays besides the training work, for ``none`` and
  ``hybridmix_v3`` (fresh): ``<method>_trainer_step_ms`` (``Trainer.train_step``, median of
  rounds of ``--suspect-steps`` steps); on the model part of the step (forward, mixed loss,
  backward, optimizer step on one mixed batch, steps queued back to back), the extra time of
  reading the loss on the host every step, ``<method>_loss_sync_cost_pct``, and of also
  all-reducing a finite-loss flag and reading it (a one-process group: NCCL on a GPU, gloo on the
  CPU; more processes add network latency), ``<method>_finite_flag_allreduce_cost_pct``;
  ``eval_train_switch_cost_pct``: ``model.eval(); model.train()`` (what ``gradient_saliency``
  does per step) over the ``hybridmix_v3`` step; ``syncs_per_step_<method>_<source>``: host
  synchronisations per step of a steady-state epoch (see :func:`epoch_syncs`; real ones on CUDA,
  counted on an emulated device on the CPU), their source lines printed.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Callable

import torch

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
    p.add_argument("--skip-steps", action="store_true", help="skip the step ratios (e.g. with --suspects alone)")
    p.add_argument(
        "--opts",
        nargs="*",
        default=[],
        metavar="KEY VALUE",
        help="config overrides for every trainer, e.g. MODEL.CHANNELS_LAST True",
    )
    p.add_argument("--methods", nargs="*", default=[], help="methods also timed with fresh saliency (step_ms_<m>)")
    p.add_argument(
        "--project-epochs", type=int, default=0, help="project each method's wall time over this many epochs"
    )
    p.add_argument(
        "--project-train-images",
        type=int,
        default=100000,
        help="training images per epoch of the projection (TinyImageNet-200: 100000)",
    )
    p.add_argument("--suspects", action="store_true", help="measure the per-step costs besides training (see above)")
    p.add_argument("--suspect-steps", type=int, default=10, help="steps queued per timed round of --suspects")
    p.add_argument("--sync-steps", type=int, default=30, help="steps of the emulated epoch of --suspects on the CPU")
    return p


def median(values: list[float]) -> float:
    """The middle value (the upper one of an even count)."""
    return sorted(values)[len(values) // 2]


def make_trainer(method: str, saliency: str, args: argparse.Namespace, tiny: str, out: str):
    """A trainer on the demo data for ``method`` / ``saliency``, mixing from epoch 1."""
    from pretrain.config import load_config
    from pretrain.engine.trainer import Trainer

    cfg = load_config(
        "pretrain/Base-Demo-R50.yaml",
        [
            "DATA.ROOT",
            tiny,
            "OUTPUT_DIR",
            os.path.join(out, f"{method}_{saliency}"),
            "MODEL.ARCH",
            args.arch,
            "MODEL.INPUT_SIZE",
            str(args.size),
            "SOLVER.BATCH_SIZE",
            str(args.batch),
            "MIX.METHOD",
            method,
            "MIX.SALIENCY",
            saliency,
            "MIX.START_EPOCH",
            "1",
        ]
        + list(args.opts),
    )
    trainer = Trainer(cfg)
    trainer.model.train()
    return trainer


def extra_variants(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """The ``--methods`` variants not already among VARIANTS (``none`` is the baseline, ``hybridmix_v3``
    the fresh variant)."""
    known = {method for _, method, saliency in VARIANTS if saliency == "fresh"}
    return [(f"m_{m}", m, "fresh") for m in dict.fromkeys(args.methods) if m not in known]


def variant_of(method: str) -> str:
    """The variant name a ``--methods`` entry is timed under."""
    return {"none": "baseline", "hybridmix_v3": "fresh"}.get(method, f"m_{method}")


def cache_filled(trainer, indices: torch.Tensor) -> bool:
    """Whether the trainer's saliency cache holds a map for every sample of ``indices``."""
    cache = getattr(trainer.cache, "cache", trainer.cache)  # the loop's wrapper around the cache itself
    maps = cache.maps[indices.to(cache.maps.device)]
    return bool(torch.isfinite(maps).flatten(1).any(1).all())


def check_batch(tiny: str, batch: int) -> None:
    """Exit with a one-line error unless the training split holds at least one batch."""
    from pretrain.data.cache import load_dataset

    num = len(load_dataset("tinyimagenet", tiny, "train", progress=False))
    if num < batch:
        raise SystemExit(f"error: {tiny} has {num} training images, fewer than --batch {batch}")


def on_device(trainer, images: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor) -> tuple:
    """A loader batch as ``Trainer.train_step`` takes it: on the trainer's device, plus the host indices."""
    dev = trainer.device
    return images.to(dev), targets.to(dev), indices.to(dev), indices


def step_times(args: argparse.Namespace, tiny: str, out: str) -> dict[str, float]:
    """Median seconds of one training step of each variant, all on the same batch, timed in turns."""
    trainers = {}
    for name, method, saliency in VARIANTS + extra_variants(args):
        try:
            trainers[name] = make_trainer(method, saliency, args, tiny, out)
        except ValueError as err:
            if name.startswith("m_"):
                print(f"{method}: left out ({err})")
                continue
            raise
    first = trainers["baseline"]
    images, targets, indices = next(iter(first.data.train_loader))
    batch = on_device(first, images, targets, indices)
    sync = torch.cuda.synchronize if first.device.type == "cuda" else (lambda: None)
    # Epoch 1 is a warm-up round; it also fills the cache for these samples, as after a first epoch.
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for round_ in range(args.steps + 1):
        for name, trainer in list(trainers.items()):
            sync()
            t0 = time.perf_counter()
            try:
                trainer.train_step(*batch, mixing=round_ > 0 or trainer.cfg.MIX.START_EPOCH <= 1)
            except Exception as err:  # noqa: BLE001  (an optional method that cannot run here)
                if not name.startswith("m_"):
                    raise
                print(f"{trainer.cfg.MIX.METHOD}: left out ({type(err).__name__}: {str(err).splitlines()[0]})")
                del trainers[name], times[name]
                continue
            sync()
            if round_:
                times[name].append(time.perf_counter() - t0)
    assert cache_filled(trainers["cached"], indices), "the cached variant's warm-up round stored no maps"
    return {name: median(t) for name, t in times.items()}


def loss_step(
    trainer, images: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor, sync: bool, flag: bool
) -> Callable[[], None]:
    """The model part of a training step on one mixed batch: forward, mixed loss, backward, optimizer
    step; with ``sync`` the loss is read on the host, with ``flag`` a finite-loss flag is also
    all-reduced and read, as ``Trainer.train_step`` does under DDP."""
    from pretrain.engine import distributed as dist_utils
    from pretrain.mixing import mix_loss

    dev = trainer.device
    x = trainer.data.test_transform(images.to(dev))  # any normalised batch of the right size
    if trainer.cfg.MODEL.CHANNELS_LAST:
        x = x.contiguous(memory_format=torch.channels_last)
    result = trainer.mixer(x, targets.to(dev), model=trainer.model)

    def step() -> None:
        with trainer.autocast():
            loss = mix_loss(trainer.model(result.images), result)
        if sync:
            finite = math.isfinite(float(loss.detach()))
            if flag:
                flags = dist_utils.all_reduce_sum(torch.tensor([float(not finite)], device=dev))
                bool(flags.item())
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()

    return step


def timed_rounds(fns: dict[str, Callable[[], None]], steps: int, rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function: ``rounds`` rounds in turns, each ``steps`` calls
    queued back to back and one device synchronisation; one untimed round first."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(rounds + 1):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            sync()
            if round_:
                times[name].append((time.perf_counter() - t0) / steps)
    return {name: median(t) for name, t in times.items()}


def count_syncs(fn: Callable[[], object]) -> collections.Counter:
    """Host synchronisations ``fn()`` makes on CUDA, by source line (torch's sync debug mode)."""
    found: collections.Counter = collections.Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            found[f"{os.path.relpath(w.filename)}:{w.lineno}"] += 1
    return found


def one_process_group(device: torch.device) -> None:
    """A torch.distributed group of this process alone (NCCL on CUDA, gloo on the CPU)."""
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1
    )


SYNC_CASES = (
    ("none", "fresh"),
    ("cutmix", "fresh"),
    ("mixup", "fresh"),
    ("salfmix", "fresh"),
    ("salfmix", "cached"),
    ("hybridmix_v3", "fresh"),
    ("hybridmix_v3", "cached"),
)


def epoch_syncs(args: argparse.Namespace, tiny: str, out: str) -> dict[str, float]:
    """``syncs_per_step_<method>_<source>``: host synchronisations per step of a steady-state epoch
    (after a warm-up epoch), with their source lines printed. On CUDA, real ones
    (``torch.cuda.set_sync_debug_mode``, over ``Trainer.train_epoch``); on the CPU, counted on the
    emulated device (:mod:`salfmix.bench.syncs`, ``--sync-steps`` steps)."""
    results: dict[str, float] = {}
    for method, source in SYNC_CASES:
        if torch.cuda.is_available():
            trainer = make_trainer(method, source, args, tiny, out)
            trainer.train_epoch(1)
            where = count_syncs(lambda t=trainer: t.train_epoch(2))
            value, shown = sum(where.values()) / len(trainer.data.train_loader), dict(where.most_common(5))
        else:
            from salfmix.bench.syncs import syncs_per_step

            value, shown = syncs_per_step(method, source, steps=args.sync_steps)
        results[f"syncs_per_step_{method}_{source}"] = value
        print(f"syncs in {method} ({source}): {shown}")
    return results


def suspects(args: argparse.Namespace, tiny: str, out: str) -> dict[str, float]:
    """The per-step costs besides training (see the module docstring)."""
    import torch.distributed as dist

    results: dict[str, float] = {}
    trainers = {m: make_trainer(m, "fresh", args, tiny, out) for m in ("none", "hybridmix_v3")}
    for method, trainer in trainers.items():
        images, targets, indices = next(iter(trainer.data.train_loader))
        batch = on_device(trainer, images, targets, indices)
        fns = {
            "trainer": lambda t=trainer, b=batch: t.train_step(*b, mixing=True),
            "nosync": loss_step(trainer, images, targets, indices, sync=False, flag=False),
            "sync": loss_step(trainer, images, targets, indices, sync=True, flag=False),
        }
        times = timed_rounds(fns, args.suspect_steps, max(args.steps, 1), trainer.device)
        results[f"{method}_trainer_step_ms"] = times["trainer"] * 1e3
        results[f"{method}_loss_sync_cost_pct"] = 100 * (times["sync"] / times["nosync"] - 1)
        one_process_group(trainer.device)
        try:
            fns = {"sync": fns["sync"], "flag": loss_step(trainer, images, targets, indices, sync=True, flag=True)}
            times.update(timed_rounds(fns, args.suspect_steps, max(args.steps, 1), trainer.device))
        finally:
            dist.destroy_process_group()
        results[f"{method}_finite_flag_allreduce_cost_pct"] = 100 * (times["flag"] / times["sync"] - 1)
    results.update(epoch_syncs(args, tiny, out))
    model = trainers["hybridmix_v3"].model
    switch = timed_rounds({"switch": lambda: (model.eval(), model.train())}, 100, 3, torch.device("cpu"))["switch"]
    results["eval_train_switch_cost_pct"] = 100 * switch / (results["hybridmix_v3_trainer_step_ms"] / 1e3)
    return results


def main(args: argparse.Namespace) -> dict[str, float]:
    """Run the measures, print BENCH lines, return them."""
    from pretrain.data.demo import write_demo_data
    from salfmix.bench.loader import loader_throughput

    tiny = os.path.join(args.data, "tiny-imagenet-200")
    if not os.path.isdir(tiny):
        write_demo_data(args.data, datasets=("tinyimagenet",))
    results: dict[str, float] = {}
    settings = {
        "arch": args.arch,
        "batch": args.batch,
        "size": args.size,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
    }
    if args.opts:
        settings["opts"] = " ".join(args.opts)
    check_batch(tiny, args.batch)
    if not args.skip_steps:
        with tempfile.TemporaryDirectory() as out:
            times = step_times(args, tiny, out)
        results["baseline_step_ms"] = times["baseline"] * 1e3
        results["hybridmix_v3_step_ratio_fresh"] = times["fresh"] / times["baseline"]
        results["hybridmix_v3_step_ratio_cached"] = times["cached"] / times["baseline"]
        for method in dict.fromkeys(args.methods):
            if variant_of(method) not in times:
                continue
            step = times[variant_of(method)]
            results[f"step_ms_{method}"] = step * 1e3
            if args.project_epochs:
                steps = args.project_train_images // args.batch * args.project_epochs
                results[f"projected_{args.project_epochs}ep_hours_{method}"] = step * steps / 3600
    if not args.skip_loader:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # Each call times our path, then ImageFolder's; a few short calls in turns, and the median
        # of each rate and of the speedup, keep a change in machine load from favouring one path.
        runs = [
            loader_throughput(
                tiny, args.loader_batch, args.loader_batches, args.size, device, num_workers=args.loader_workers
            )
            for _ in range(args.loader_repeats)
        ]
        for key in ("ours_images_per_s", "imagefolder_images_per_s", "loader_speedup_vs_imagefolder"):
            results[key] = median([float(run[key]) for run in runs])
        settings.update(
            {
                f"loader_{k}": runs[0][k]
                for k in ("batch_size", "num_batches", "imagefolder_workers", "train_images", "malloc_tuned")
            }
        )
        settings["loader_repeats"] = args.loader_repeats
    if args.suspects:
        with tempfile.TemporaryDirectory() as out:
            results.update(suspects(args, tiny, out))
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    for key, value in results.items():
        print(f"BENCH {key} {value:.4g}")
    return results


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
