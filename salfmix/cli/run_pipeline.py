"""One method through the whole pipeline: pretrain -> convert -> fine-tune -> evaluate.

    python -m salfmix.cli.run_pipeline --method hybridmix_v3 [--seed 0] [--out output/pipeline] [--num-gpus 4] \\
        [--pretrain-config FILE] [--det-config FILE] \\
        [--pretrain-opts "DATA.ROOT /data/tiny-imagenet-200"] [--det-opts "SOLVER.MAX_ITER 24000"] [--quiet]

Layout under --out (one name per method and seed, NAME = <method>_s<seed>):
  pretrain/NAME/          the pretraining run folder (model_final.pth, metrics.jsonl, run.json, ...)
  weights/NAME.pkl        the converted Detectron2 backbone (weights/NAME.source.json: from which run)
  detection/NAME/         the detection run folder (eval_results.json, run_info.json, run.json, ...)
  logs/NAME.<stage>.log   each stage's output

The method is the MIX.METHOD the pretraining config trains: a base config (one that sets no
MIX.METHOD; default pretrain/Base-TinyImageNet-R50.yaml) or a path with "{method}" takes --method;
a leaf of one method may omit --method, and a --method that contradicts it is refused. Each stage
whose run.json says "finished" is skipped, an unfinished one is resumed, so running the same
command again continues where it stopped (Ctrl-C stops the running stage at a safe point).
Detection datasets are found through $DETECTRON2_DATASETS (see detection/README.md). --launcher
slurm runs each stage as a SLURM job (salfmix.pipeline.slurm; README: "Running on a SLURM
cluster"); --status prints where every stage stands.
"""

from __future__ import annotations

import argparse

from salfmix.pipeline.cli import add_common_options, execute, opts_words, seed_number
from salfmix.pipeline.plan import plan_pipelines
from salfmix.pipeline.runner import run_pipeline


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="run_pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--method", default=None, help="the mixing method (see pretrain.mixing.MIXERS)")
    p.add_argument("--seed", type=seed_number, default=0, help="SEED of both stages (default 0)")
    return add_common_options(p)


def main(args: argparse.Namespace) -> str:
    """Run every unfinished stage; returns the detection run folder. Exits 2 on a bad plan, 1 on
    a failed stage (one line each), 130 / 143 after SIGINT / SIGTERM."""

    def plan():
        return plan_pipelines(
            [args.method],
            [args.seed],
            args.out,
            args.pretrain_config,
            args.det_config,
            opts_words(args.pretrain_opts, "--pretrain-opts"),
            opts_words(args.det_opts, "--det-opts"),
            args.num_gpus,
        )

    return execute("run_pipeline", plan, lambda plans, ctx: run_pipeline(plans[0], ctx, args.quiet), args=args)


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
