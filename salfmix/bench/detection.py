"""Time the paper's Faster R-CNN R50-C4 recipe for a short run, fp32 and AMP, then evaluate it.

Runs the project's own commands, each as a subprocess (their output goes to this one's):

1. generated data: TinyImageNet layout (``salfmix.cli.make_demo_data``) and VOC layout
   (``python -m detection.voc_demo``, at VOC's usual 500 x 375 images; the configs' input sizes
   then resize them as they would real VOC images);
2. a backbone: ``salfmix.cli.pretrain`` (``configs/pretrain/Base-Demo-R50.yaml``, MIX.METHOD none, a few epochs),
   its BatchNorm statistics then recomputed on the VOC images (a network trained for seconds
   still has nearly its initial statistics, with which Detectron2's frozen BN lets the
   activations of a 50-layer network grow to Inf), and ``salfmix.cli.convert_to_detectron2``;
3. ``salfmix.cli.train_detection`` with ``configs/detection/voc0712_faster_rcnn_R_50_C4_24k.yaml``:
   the paper's batch 8, lr 0.02 and warm-up on one device (``SOLVER.REFERENCE_WORLD_SIZE 0``:
   Detectron2 would otherwise rescale the 4-GPU recipe to batch 2, lr 0.005 on one GPU),
   ``--iters`` iterations, then the VOC evaluation Detectron2 runs after the last one.
   Once in fp32 and once with ``SOLVER.AMP.ENABLED`` (CUDA only).

Prints ``BENCH det_r50c4_<mode>_s_per_iter`` (Detectron2's "Overall training speed", which
leaves out its first iterations; from the per-20-iteration times of ``metrics.json`` when a run
was stopped before its end), ``det_r50c4_<mode>_projected_24k_hours`` (24k iterations at
that speed on this one device: the paper's schedule; 4 GPUs at batch 2 each were not measured)
and ``det_r50c4_<mode>_AP50`` / ``_AP`` (generated data, a backbone trained for seconds: these
only show the evaluation runs). ``--smoke``: tiny images, few proposals, a few iterations, so
that the same path runs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

from salfmix.config_files import config_path

DET_CONFIG = config_path("detection/voc0712_faster_rcnn_R_50_C4_24k.yaml")
PRETRAIN_CONFIG = config_path("pretrain/Base-Demo-R50.yaml")
PAPER_ITERS = 24000
SPEED = re.compile(r"Overall training speed: (\d+) iterations in \S+ \(([\d.]+) s / it\)")
# A tiny R50-C4 for a CPU: small images and few proposals and regions (res5 runs per region).
SMOKE_OPTS = [
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    "96",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "96",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "32",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "16",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "16",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",
    "7",
    "DATALOADER.NUM_WORKERS",
    "0",
]


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="folder for the data, weights and runs (created)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--iters", type=int, default=100, help="training iterations per run")
    p.add_argument("--batch", type=int, default=8, help="images per iteration (the paper: 8)")
    p.add_argument("--modes", nargs="+", default=["fp32", "amp"], choices=("fp32", "amp"))
    p.add_argument(
        "--pretrain-epochs",
        type=int,
        default=2,
        help="epochs of the backbone's pretraining (0: a random ResNet-50, BatchNorm calibrated)",
    )
    p.add_argument("--run-timeout", type=float, default=240, help="seconds allowed to each command")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU")
    return p


def command(cmd: list[str], timeout: float) -> None:
    """Run ``cmd`` from the repository root, output passed through; its process group is killed
    at ``timeout``. Raises SystemExit naming the command if it fails."""
    name = " ".join(cmd[1:3])
    print(f"$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, start_new_session=True)  # its workers die with it
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise SystemExit(f"error: {name} did not finish within {timeout:.0f} s") from None
    print(f"({name}: {time.perf_counter() - start:.1f} s)", flush=True)
    if code != 0:
        raise SystemExit(f"error: {name} failed (exit {code})")


def calibrate_batchnorm(src: str | None, dst: str, voc: str, device: str, max_images: int = 32) -> None:
    """Save the ResNet-50 of ``src`` (None: a random one) with every BatchNorm's running statistics
    recomputed as the plain average over train-mode forwards of the VOC images (normalised as in
    pretraining)."""
    import numpy as np
    import torch
    from PIL import Image

    from pretrain.data.augment import IMAGENET_MEAN, IMAGENET_STD
    from pretrain.models import load_resnet50

    model = load_resnet50(src).to(device).train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    folder = os.path.join(voc, "JPEGImages")
    names = sorted(os.listdir(folder))[:max_images]
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    with torch.no_grad():
        for i in range(0, len(names), 8):
            batch = np.stack([np.asarray(Image.open(os.path.join(folder, n)).convert("RGB")) for n in names[i : i + 8]])
            x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div(255)
            model((x - mean) / std)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, dst)


def seconds_per_iter(run_dir: str) -> float | None:
    """Detectron2's overall training speed from the run's log.txt (median of metrics.json's
    per-iteration ``time`` as a fallback); None if neither is there."""
    log = os.path.join(run_dir, "log.txt")
    if os.path.isfile(log):
        with open(log, encoding="utf-8", errors="replace") as f:
            found = SPEED.findall(f.read())
        if found:
            return float(found[-1][1])
    metrics = os.path.join(run_dir, "metrics.json")
    if os.path.isfile(metrics):
        with open(metrics, encoding="utf-8") as f:
            times = [json.loads(line).get("time") for line in f if line.strip()]
        times = [t for t in times if isinstance(t, (int, float))]
        if times:
            return statistics.median(times)
    return None


def eval_results(run_dir: str) -> dict[str, float]:
    """AP / AP50 / AP75 of the run's (single) test set, from eval_results.json; {} if absent."""
    path = os.path.join(run_dir, "eval_results.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        datasets = json.load(f).get("datasets", {})
    for entry in datasets.values():
        return {k: float(entry[k]) for k in ("AP", "AP50", "AP75") if k in entry}
    return {}


def bench(key: str, value: float) -> None:
    """Print one BENCH line at once."""
    print(f"BENCH {key} {value:.4g}", flush=True)


def main(args: argparse.Namespace) -> dict[str, float]:
    """Prepare, train and evaluate each mode; print BENCH lines; return them."""
    py, work = sys.executable, os.path.abspath(args.work)
    modes = [m for m in args.modes if m != "amp" or args.device == "cuda"]
    if len(modes) < len(args.modes):
        print("amp: skipped (Detectron2's AMP trainer needs CUDA)")
    tiny = os.path.join(work, "data", "tiny-imagenet-200")
    voc = os.path.join(work, "voc", "VOC2007")
    weights = os.path.join(work, "r50.pkl")
    small = ["--classes", "4", "--train-per-class", "4", "--val-per-class", "2"] if args.smoke else []
    if not os.path.isdir(tiny):
        command(
            [py, "-m", "salfmix.cli.make_demo_data", "--out", os.path.join(work, "data"), "--datasets", "tinyimagenet"]
            + small,
            args.run_timeout,
        )
    if not os.path.isdir(voc):
        size = (
            ["--num-trainval", "8", "--num-test", "4"]
            if args.smoke
            else ["--num-trainval", "64", "--num-test", "32", "--width", "500", "--height", "375"]
        )
        command([py, "-m", "detection.voc_demo", "--out", os.path.join(work, "voc")] + size, args.run_timeout)
    if not os.path.isfile(weights):
        pre = os.path.join(work, "pretrain")
        trained = None
        if args.pretrain_epochs > 0:
            opts = [
                "DATA.ROOT",
                tiny,
                "OUTPUT_DIR",
                pre,
                "SOLVER.MAX_EPOCHS",
                str(args.pretrain_epochs),
                "TRAIN.PROGRESS",
                "False",
            ]
            if args.smoke:
                opts += ["MODEL.INPUT_SIZE", "32", "SOLVER.BATCH_SIZE", "8", "TEST.BATCH_SIZE", "8"]
            command(
                [py, "-m", "salfmix.cli.pretrain", "--config-file", PRETRAIN_CONFIG, "MIX.METHOD", "none"] + opts,
                args.run_timeout,
            )
            trained = os.path.join(pre, "model_final.pth")
        calibrated = os.path.join(work, "r50_calibrated.pth")
        calibrate_batchnorm(trained, calibrated, voc, args.device)
        command([py, "-m", "salfmix.cli.convert_to_detectron2", calibrated, weights], args.run_timeout)
    results: dict[str, float] = {}
    failed = []
    for mode in modes:
        out = os.path.join(work, f"det_{mode}")
        opts = [
            "MODEL.WEIGHTS",
            weights,
            "MODEL.DEVICE",
            args.device,
            "MODEL.ROI_HEADS.NUM_CLASSES",
            "3",
            "SALFMIX.VOC_FOLDER.NAME",
            "gpucheck_voc",
            "SALFMIX.VOC_FOLDER.DIR",
            voc,
            "SALFMIX.VOC_FOLDER.CLASS_NAMES",
            "['red', 'green', 'blue']",
            "DATASETS.TRAIN",
            "('gpucheck_voc_trainval',)",
            "DATASETS.TEST",
            "('gpucheck_voc_test',)",
            "SOLVER.IMS_PER_BATCH",
            str(args.batch),
            "SOLVER.REFERENCE_WORLD_SIZE",
            "0",
            "SOLVER.MAX_ITER",
            str(args.iters),
            "SOLVER.CHECKPOINT_PERIOD",
            "100000000",
            "SOLVER.AMP.ENABLED",
            str(mode == "amp"),
            "SEED",
            "0",
            "OUTPUT_DIR",
            out,
        ] + (SMOKE_OPTS if args.smoke else [])
        try:
            command([py, "-m", "salfmix.cli.train_detection", "--config-file", DET_CONFIG] + opts, args.run_timeout)
        except SystemExit as err:  # the other mode still runs; what the run logged is still read
            print(err, flush=True)
            failed.append(mode)
        speed = seconds_per_iter(out)
        if speed is not None:
            results[f"det_r50c4_{mode}_s_per_iter"] = speed
            results[f"det_r50c4_{mode}_projected_24k_hours"] = speed * PAPER_ITERS / 3600
        for key, value in eval_results(out).items():
            results[f"det_r50c4_{mode}_{key}"] = value
        for key in [k for k in results if k.startswith(f"det_r50c4_{mode}_")]:
            bench(key, results[key])
    fp32, amp = results.get("det_r50c4_fp32_s_per_iter"), results.get("det_r50c4_amp_s_per_iter")
    if fp32 and amp:
        results["det_r50c4_amp_speedup_vs_fp32"] = fp32 / amp
        bench("det_r50c4_amp_speedup_vs_fp32", fp32 / amp)
    print(
        f"settings: device={args.device}, batch={args.batch}, iters={args.iters}, modes={' '.join(modes)}, "
        f"smoke={args.smoke}"
    )
    if failed:
        raise SystemExit(f"error: the {' and '.join(failed)} run failed")
    return results


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
