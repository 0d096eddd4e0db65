#!/usr/bin/env bash
# The memorising-regime Fashion-MNIST study of docs/RESULTS.md: ResNet-20 on the real
# Fashion-MNIST files, a fixed stratified subset of 100 training images per class (1,000), the
# full 10,000-image test set, a schedule long enough for the baseline to fit its training set
# (configs/pretrain/Base-FashionMNIST-ResNet20-Memorising.yaml gives the length and why). The
# paper's methods with 3 seeds each, then HybridMix v3 with the cached saliency source (3 seeds),
# then the report with the Welch tests of the paper's claims. Two runs at a time, one torch
# thread each. Resumable: run it again to finish an interrupted study (finished runs are
# skipped, unfinished ones resume from their last checkpoint). Runs go to
# OUTPUT_ROOT/<method>/seed<k> (fresh saliency) and OUTPUT_ROOT_cached/<method>/seed<k>.
#
#   tools/run_study_fashion_memorising.sh [OUTPUT_ROOT] [DATA_ROOT]
#
# DATA_ROOT holds {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (default: where Debian's
# dataset-fashion-mnist package puts them). About 9.5 h on 2 idle CPU cores (docs/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-output/study_fashion_memorising}
DATA=${2:-/usr/share/datasets/fashion-mnist}
BASE=configs/pretrain/Base-FashionMNIST-ResNet20-Memorising.yaml
EPOCHS=$("$PY" -c "import sys; from pretrain.config import load_config; \
print(load_config(sys.argv[1], ['DATA.ROOT', 'x']).SOLVER.MAX_EPOCHS)" "$BASE")
common=(--data-root "$DATA" --config-file "$BASE" --epochs "$EPOCHS" --batch-size 64 --lr 0.05 --input-size 32
        --n 4 --r 0.3 --checkpoint-period 25 --jobs 2 --threads 1)
opts=(--opts DATA.CACHE_DIR "${OUT}_cache")
methods=(none cutout cutout_saliency salfmix salfmix_random mixup cutmix saliencymix resizemix
         hybridmix_v1 hybridmix_v2 hybridmix_v3)
"$PY" -m salfmix.cli.run_study --output-root "$OUT" "${common[@]}" --methods "${methods[@]}" --seeds 0 1 2 "${opts[@]}"
"$PY" -m salfmix.cli.run_study --output-root "${OUT}_cached" "${common[@]}" --methods hybridmix_v3 --saliency cached \
    --seeds 0 1 2 "${opts[@]}"
"$PY" -m salfmix.cli.cls_report "$OUT"/*/seed* "${OUT}_cached"/*/seed* --out "$OUT/report" \
    --title "Fashion-MNIST, memorising regime (real; 100 train/class, full 10k test), ResNet-20, $EPOCHS epochs" \
    --compare hybridmix_v3 cutmix --compare hybridmix_v3 none --compare salfmix none \
    --compare salfmix salfmix_random --compare cutout_saliency cutout --compare salfmix cutout_saliency \
    --compare cutmix none --compare hybridmix_v3+cached hybridmix_v3
