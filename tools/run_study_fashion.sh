#!/usr/bin/env bash
# The Fashion-MNIST study of docs/RESULTS.md: ResNet-20 on the real Fashion-MNIST files (a
# stratified 3,000-image training subset, the full 10,000-image test set), every method of
# pretrain.mixing.MIXERS plus the saliency / pooling / cutout ablations (3 seeds; 5 for none,
# cutmix, salfmix and hybridmix_v3), then salfmix and hybridmix_v3 with the cached saliency
# source (5 seeds), then the report with the Welch tests. Resumable: run it again to finish an
# interrupted study (finished runs are skipped, unfinished ones resume). Runs go to
# OUTPUT_ROOT/<method>/seed<k> (fresh saliency) and OUTPUT_ROOT_cached/<method>/seed<k>.
#
#   tools/run_study_fashion.sh [OUTPUT_ROOT] [DATA_ROOT]
#
# DATA_ROOT holds {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (default: where Debian's
# dataset-fashion-mnist package puts them). About 2 h on 2 CPU cores (docs/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-output/study_fashion}
DATA=${2:-/usr/share/datasets/fashion-mnist}
common=(--data-root "$DATA" --config-file pretrain/Base-FashionMNIST-ResNet20.yaml --epochs 15 --batch-size 64
        --lr 0.05 --input-size 32 --n 4 --r 0.3 --jobs 2 --threads 1 --ablations)
opts=(--opts DATA.TRAIN_PER_CLASS 300 DATA.CACHE_DIR "${OUT}_cache")
# --ablations without names: MIXERS already holds the ablations' methods (cutout_saliency,
# salfmix_random, salfmix_nopool); the r sweep is left out.
"$PY" -m salfmix.cli.run_study --output-root "$OUT" "${common[@]}" --seeds 0 1 2 "${opts[@]}"
"$PY" -m salfmix.cli.run_study --output-root "${OUT}_cached" "${common[@]}" --methods salfmix hybridmix_v3 \
    --saliency cached --seeds 0 1 2 "${opts[@]}"
"$PY" -m salfmix.cli.run_study --output-root "$OUT" "${common[@]}" --methods none cutmix salfmix hybridmix_v3 \
    --seeds 3 4 "${opts[@]}"
"$PY" -m salfmix.cli.run_study --output-root "${OUT}_cached" "${common[@]}" --methods salfmix hybridmix_v3 \
    --saliency cached --seeds 3 4 "${opts[@]}"
"$PY" -m salfmix.cli.cls_report "$OUT"/*/seed* "${OUT}_cached"/*/seed* --out "$OUT/report" \
    --title "Fashion-MNIST (real; 300 train/class, full 10k test), ResNet-20, 15 epochs" \
    --compare hybridmix_v3 cutmix --compare salfmix cutout_saliency --compare salfmix salfmix_random \
    --compare salfmix salfmix_nopool --compare cutout_saliency cutout --compare salfmix none \
    --compare hybridmix_v3 none --compare cutmix none \
    --compare salfmix+cached salfmix --compare hybridmix_v3+cached hybridmix_v3
