#!/usr/bin/env bash
# The embedded demo (`make demo`): the whole pipeline on generated data, on the CPU
# (salfmix.cli.demo; an installed package runs the same with `salfmix-demo --out DIR`).
#
# 1. the mixing visualisation (output/demo/mixing/*.png);
# 2. generated data in the real layouts: TinyImageNet-200 (output/demo/data) and PASCAL VOC
#    (output/demo/voc_demo/VOC2007): coloured shapes, NOT the real datasets;
# 3. `none` and `hybridmix_v3` (or $DEMO_METHODS): ResNet-50 pretraining (8 epochs, 32 px),
#    conversion, Faster R-CNN R50-FPN fine-tuning (160 iterations) and VOC evaluation;
# 4. the report: output/demo/report.{md,csv,json,png}, printed at the end.
# Each stage's full output is in output/demo/logs/.
# Re-running skips what is done (delete output/demo to start over). DEMO_LAUNCHER=slurm runs
# every stage as a SLURM job on the default partition and prints the same report.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exec "${PYTHON:-.venv/bin/python}" -m salfmix.cli.demo --out output/demo "$@"
