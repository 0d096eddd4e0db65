"""Compare pretraining runs like the paper's Tables 4/5: top-1 / top-5 error, one row per method.

Each RUN_DIR is an OUTPUT_DIR of salfmix.cli.pretrain. The result of a run is the last record of its
metrics.jsonl (the final epoch). The method comes from run_info.json (salfmix.cli.run_study writes
it: the tag, e.g. salfmix_r0.5) or else config.yaml (MIX.METHOD, plus _r<R> for a non-default
patch ratio); the seed likewise. Runs sharing a method are averaged: mean ± sample std over seeds.

Example::

    python -m salfmix.cli.cls_report output/study_digits/*/seed* --out output/study_digits/report

writes report.md, report.csv, report.json and report.png (bar chart with error bars) to --out.
A run with MIX.SALIENCY cached is its own row (``salfmix+cached``). ``--compare A B`` (repeatable)
adds Welch's two-sided t-test of row A minus row B on the per-seed top-1 errors, e.g.
``--compare hybridmix_v3 cutmix --compare salfmix salfmix+cached``.
"""

from __future__ import annotations

import argparse

from pretrain.report import ReportError, build_report
from pretrain.report_format import write_report


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="pretraining run folders (OUTPUT_DIRs)")
    p.add_argument("--out", required=True, help="folder for report.md/.csv/.json and the chart")
    p.add_argument("--title", default="Top-1 / top-5 test error", help="title of the table and the chart")
    p.add_argument("--png-name", default="report.png", help="file name of the chart inside --out")
    p.add_argument(
        "--compare",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="add Welch's two-sided t-test of row A minus row B (top-1, per seed); repeatable",
    )
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="report runs that stopped before their last epoch (flagged) instead of refusing",
    )
    return p


def main(args: argparse.Namespace) -> dict[str, str]:
    """Write the report files; print the markdown table; return the paths. Bad input exits with one line."""
    try:
        report = build_report(args.run_dirs, args.allow_incomplete, args.title, compare=args.compare)
    except ReportError as err:
        raise SystemExit(f"error: {err}") from None
    paths = write_report(report, args.out, args.png_name)
    with open(paths["md"], encoding="utf-8") as f:
        print(f.read(), end="")
    print(f"wrote {', '.join(paths.values())}")
    return paths


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
