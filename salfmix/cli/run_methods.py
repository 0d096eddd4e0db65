"""Several methods and seeds through the whole pipeline, then the side-by-side report.

    python -m salfmix.cli.run_methods --methods "none cutmix salfmix hybridmix_v3" --seeds "0 1 2" \\
        [--out output/pipeline] [--report-out DIR] [--note TEXT] [any salfmix.cli.run_pipeline option]

Every method name, config and override is checked before the first run starts. Each (method,
seed) then runs like salfmix.cli.run_pipeline (finished stages are skipped, so the same command
continues an interrupted study), and the detection report (salfmix.cli.voc_report: mean ± std over
seeds) of all of them goes to report.{md,csv,json,png} in --report-out (default: OUT/report).
"""

from __future__ import annotations

import argparse
import os

from salfmix.errors import PipelineError
from salfmix.pipeline.cli import add_common_options, execute, opts_words, seed_number
from salfmix.pipeline.plan import plan_pipelines, split_words
from salfmix.pipeline.runner import run_methods


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="run_methods", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--methods",
        nargs="+",
        required=True,
        metavar="M",
        help='methods, as words or one quoted list ("none hybridmix_v3")',
    )
    p.add_argument("--seeds", nargs="+", default=["0"], metavar="S", help='seeds (default 0), e.g. --seeds "0 1 2"')
    p.add_argument("--report-out", default=None, metavar="DIR", help="report folder (default: OUT/report)")
    p.add_argument("--note", default=None, help="a line printed under the report's title (e.g. the data's origin)")
    return add_common_options(p)


def main(args: argparse.Namespace) -> dict[str, str]:
    """Run every (method, seed), then write the report; returns its file paths. Exits 2 on a bad
    plan, 1 on a failed stage (one line each), 130 / 143 after SIGINT / SIGTERM."""

    def plan():
        seeds = []
        for word in split_words(args.seeds):
            try:
                seeds.append(seed_number(word))
            except argparse.ArgumentTypeError as err:
                raise PipelineError(f"--seeds: {err}") from None
        return plan_pipelines(
            split_words(args.methods),
            seeds,
            args.out,
            args.pretrain_config,
            args.det_config,
            opts_words(args.pretrain_opts, "--pretrain-opts"),
            opts_words(args.det_opts, "--det-opts"),
            args.num_gpus,
        )

    report_out = args.report_out or os.path.join(args.out, "report")
    return execute(
        "run_methods",
        plan,
        lambda plans, ctx: run_methods(plans, ctx, report_out, args.note, args.quiet),
        report_out,
        args=args,
        note=args.note,
    )


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
