#!/usr/bin/env bash
# The digits study of docs/RESULTS.md: the UCI handwritten digits (real data, 8x8 upsampled to
# 32x32, CIFAR-10 layout), 20 training images per class, every method of pretrain.mixing.MIXERS
# plus the ablations, 3 seeds, PreActResNet-18. Resumable: run it again to finish an interrupted
# study (finished runs are skipped). Extra arguments go to salfmix.cli.run_study.
#
#   tools/run_study.sh [OUTPUT_ROOT] [run_study.py options...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-output/study_digits}
shift || true
"$PY" -m salfmix.cli.make_digits_dataset --out "$OUT/data" --train-per-class 20 --seed 0
exec "$PY" -m salfmix.cli.run_study --data-root "$OUT/data/cifar-10-batches-py" --output-root "$OUT" \
    --seeds 0 1 2 --epochs 20 --batch-size 20 --lr 0.02 --input-size 16 --n 4 --r 0.3 --start-epoch 2 \
    --jobs 2 --threads 1 "$@" --opts AUG.SCALE "(0.35,1.0)" AUG.FLIP False
