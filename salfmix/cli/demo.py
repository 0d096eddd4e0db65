"""The whole pipeline on generated data, from an empty folder: ``python -m salfmix.cli.demo --out DIR``
(installed: ``salfmix-demo --out DIR``; in a checkout ``make demo`` runs it into output/demo).

Draws what SalfMix and HybridMix do (DIR/mixing), writes generated data in the real
TinyImageNet-200 and PASCAL VOC layouts (coloured shapes, not the real datasets), runs each method
through pretraining (ResNet-50, the shipped ``pretrain/Base-Demo-R50.yaml``), conversion, Faster
R-CNN fine-tuning (``detection/voc_demo_faster_rcnn_R_50_FPN_cpu.yaml``) and VOC evaluation, and
prints the side-by-side report (also DIR/report.{md,csv,json,png}). Every config comes from the
package: nothing of a checkout is needed. Running it again skips finished stages.
"""

from __future__ import annotations

import argparse
import os
import time

NOTE = (
    "Generated demo data (coloured shapes in the TinyImageNet and VOC layouts), not the real datasets: these "
    "numbers only show that the pipeline runs end to end."
)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="salfmix-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="output/demo", help="the demo's folder (default: output/demo)")
    p.add_argument(
        "--methods",
        default=os.environ.get("DEMO_METHODS", "none hybridmix_v3"),
        help='methods to compare (default "none hybridmix_v3", or $DEMO_METHODS)',
    )
    p.add_argument("--num-gpus", type=int, default=1, help="processes per stage (see run_methods --num-gpus)")
    p.add_argument("--skip-figures", action="store_true", help="do not draw the mixing figures")
    p.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default=os.environ.get("DEMO_LAUNCHER") or "local",
        help="local (default), or slurm: every stage a SLURM job on the default partition, the command "
        "waits and prints the same report ($DEMO_LAUNCHER)",
    )
    p.add_argument(
        "--cpus-per-task",
        type=int,
        default=None,
        metavar="N",
        help="slurm: CPUs (torch threads) per job (default: the threads a local run uses here, so that "
        "both launchers compute the same numbers)",
    )
    return p


def main(args: argparse.Namespace) -> dict[str, str]:
    """Run the demo; returns the report's file paths. Exits like ``run_methods`` on an error or a stop."""
    import torch

    from detection.voc_demo import main as voc_demo_main
    from salfmix.cli import make_demo_data, run_methods, visualize_mixing

    start, out = time.time(), args.out
    args.cpus_per_task = args.cpus_per_task or torch.get_num_threads()
    if not args.skip_figures:
        visualize_mixing.main(visualize_mixing.get_parser().parse_args(["--out", os.path.join(out, "mixing")]))
    made = make_demo_data.main(
        make_demo_data.get_parser().parse_args(["--out", os.path.join(out, "data"), "--datasets", "tinyimagenet"])
    )
    voc = voc_demo_main(
        argparse.Namespace(
            out=os.path.join(out, "voc_demo"), num_trainval=32, num_test=12, width=128, height=96, seed=0
        )
    )
    paths = run_methods.main(
        run_methods.get_parser().parse_args(
            [
                "--methods",
                args.methods,
                "--seeds",
                "0",
                "--out",
                out,
                "--report-out",
                out,
                "--pretrain-config",
                "pretrain/Base-Demo-R50.yaml",
                "--det-config",
                "detection/voc_demo_faster_rcnn_R_50_FPN_cpu.yaml",
                "--pretrain-opts",
                f"DATA.ROOT {made['tinyimagenet']}",
                "--det-opts",
                f"SALFMIX.VOC_FOLDER.DIR {voc}",
                "--num-gpus",
                str(args.num_gpus),
                "--quiet",
                "--note",
                NOTE,
                "--launcher",
                args.launcher,
                *(["--cpus-per-task", str(args.cpus_per_task), "--time", "60"] if args.launcher == "slurm" else []),
            ]
        )
    )
    print(f"demo finished in {time.time() - start:.0f} s; the numbers above come from generated demo data")
    return paths


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
