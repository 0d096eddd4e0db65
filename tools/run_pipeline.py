#!/usr/bin/env python
"""One method through the whole pipeline: pretrain -> convert -> fine-tune -> evaluate.

    tools/run_pipeline.py --method hybridmix_v3 [--seed 0] [--out output/pipeline] [--num-gpus 4] \\
        [--pretrain-config FILE] [--det-config FILE] \\
        [--pretrain-opts "DATA.ROOT /data/tiny-imagenet-200"] [--det-opts "SOLVER.MAX_ITER 24000"] [--quiet]

Layout under --out (one name per method and seed, NAME = <method>_s<seed>):
  pretrain/NAME/          the pretraining run folder (model_final.pth, metrics.jsonl, run.json, ...)
  weights/NAME.pkl        the converted Detectron2 backbone (weights/NAME.source.json: from which run)
  detection/NAME/         the detection run folder (eval_results.json, run_info.json, run.json, ...)
  logs/NAME.<stage>.log   each stage's output

The method is the MIX.METHOD the pretraining config trains: --pretrain-config with "{method}"
(default configs/pretrain/tinyimagenet_r50_{method}.yaml) takes --method; a config without it
may omit --method, and a --method that contradicts it is refused. Each stage whose run.json says
"finished" is skipped, an unfinished one is resumed, so running the same command again
continues where it stopped (Ctrl-C stops the running stage at a safe point). Detection datasets
are found through $DETECTRON2_DATASETS (see detection/README.md).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.cli import add_common_options, execute, opts_words, seed_number  # noqa: E402
from pipeline.plan import plan_pipelines  # noqa: E402
from pipeline.runner import run_pipeline  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="run_pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default=None, help="the mixing method (see pretrain.mixing.MIXERS)")
    p.add_argument("--seed", type=seed_number, default=0, help="SEED of both stages (default 0)")
    return add_common_options(p)


def main(args: argparse.Namespace) -> str:
    """Run every unfinished stage; returns the detection run folder. Exits 2 on a bad plan, 1 on
    a failed stage (one line each), 130 / 143 after SIGINT / SIGTERM."""
    def plan():
        return plan_pipelines([args.method], [args.seed], args.out, args.pretrain_config, args.det_config,
                              opts_words(args.pretrain_opts, "--pretrain-opts"),
                              opts_words(args.det_opts, "--det-opts"), args.num_gpus)

    return execute("run_pipeline", plan, lambda plans, ctx: run_pipeline(plans[0], ctx, args.quiet))


if __name__ == "__main__":
    main(get_parser().parse_args())
