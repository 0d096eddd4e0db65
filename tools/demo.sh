#!/usr/bin/env bash
# The embedded demo (`make demo`): the whole pipeline on generated data, on the CPU.
#
# 1. the mixing visualisation (output/demo/mixing/*.png);
# 2. generated data in the real layouts: TinyImageNet-200 (output/demo/data) and PASCAL VOC
#    (output/demo/voc_demo/VOC2007): coloured shapes, NOT the real datasets;
# 3. `none` and `hybridmix_v3` (tools/run_methods.py): ResNet-50 pretraining (8 epochs, 32 px),
#    conversion, Faster R-CNN R50-FPN fine-tuning (160 iterations) and VOC evaluation;
# 4. the report: output/demo/report.{md,csv,json,png}, printed at the end.
# Each stage's full output is in output/demo/logs/.
# Re-running skips what is done (delete output/demo to start over).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-.venv/bin/python}"
out=output/demo
methods="${DEMO_METHODS:-none hybridmix_v3}"
start=$SECONDS

"$python" tools/visualize_mixing.py --out "$out/mixing"
"$python" tools/make_demo_data.py --out "$out/data" --datasets tinyimagenet
"$python" -m detection.voc_demo --out "$out/voc_demo"
"$python" tools/run_methods.py --methods "$methods" --seeds 0 --out "$out" --report-out "$out" \
    --pretrain-config "configs/pretrain/demo_r50_{method}.yaml" \
    --det-config configs/detection/voc_demo_faster_rcnn_R_50_FPN_cpu.yaml \
    --pretrain-opts "DATA.ROOT $out/data/tiny-imagenet-200" \
    --det-opts "SALFMIX.VOC_FOLDER.DIR $out/voc_demo/VOC2007" --quiet \
    --note "Generated demo data (coloured shapes in the TinyImageNet and VOC layouts), not the real datasets: these numbers only show that the pipeline runs end to end."
echo "demo finished in $((SECONDS - start)) s; the numbers above come from generated demo data"
