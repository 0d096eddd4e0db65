"""Compare detection runs like the paper's Table 8: one row per backbone pretraining method.

Each RUN_DIR is an OUTPUT_DIR of salfmix.cli.train_detection. The report reads its
eval_results.json (required), run_info.json (method, seed; else the saved config.yaml's
SALFMIX.METHOD and SEED, else the folder name) and pretrain_metrics.json (top1_err, top5_err;
optional). Runs sharing a method are averaged (mean ± sample std over seeds). Each run's
protocol (backbone layout, norm, batch, lr, iterations as trained after Detectron2's GPU
rescaling) is read from run_info.json, else from config.yaml; runs of one method under
different protocols are refused, and rows under different protocols are flagged.

Example::

    python -m salfmix.cli.voc_report output/det/*_s[0-4] --out output/det/report

writes report.md, report.csv, report.json and report.png to --out.
"""

from __future__ import annotations

import argparse
import sys

from detection.report import build_report, write_report
from salfmix.errors import DetectionSetupError


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="detection run folders (OUTPUT_DIRs)")
    p.add_argument("--out", required=True, help="folder for report.md/.csv/.json/.png")
    p.add_argument("--dataset", default=None, help="test dataset to report (default: voc_2007_test, or the only one)")
    p.add_argument(
        "--note", default=None, help="a line printed under the title and kept in report.json (e.g. the data's origin)"
    )
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="show runs evaluated before their last iteration, in rows of their own (default: refused)",
    )
    return p


def main(args: argparse.Namespace) -> dict[str, str]:
    """Write the report files; print the markdown table; return the paths."""
    report = build_report(
        args.run_dirs, args.dataset, args.note, allow_incomplete=args.allow_incomplete, out_dir=args.out
    )
    paths = write_report(report, args.out)
    with open(paths["md"], encoding="utf-8") as f:
        print(f.read(), end="")
    protocols = sorted({str(entry["protocol"]) for entry in report["methods"]})
    if len(protocols) > 1:
        print(f"warning: the rows were fine-tuned under {len(protocols)} different protocols", file=sys.stderr)
    for entry in report["methods"]:
        for run_dir in entry["incomplete_runs"]:
            print(f"warning: {run_dir}: evaluated before its last iteration", file=sys.stderr)
    print(f"wrote {', '.join(paths.values())}")
    return paths


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    try:
        main(get_parser().parse_args(argv))
    except DetectionSetupError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    run()
