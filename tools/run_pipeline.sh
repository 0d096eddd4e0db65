#!/usr/bin/env bash
# One method through the whole pipeline: pretrain -> convert -> fine-tune -> evaluate.
#
#   tools/run_pipeline.sh --method hybridmix_v3 [--seed 0] [--out output/pipeline] [--num-gpus 4] \
#       [--pretrain-config FILE] [--det-config FILE] \
#       [--pretrain-opts "DATA.ROOT /data/tiny-imagenet-200"] [--det-opts "SOLVER.MAX_ITER 24000"] [--quiet]
#
# Layout under --out (one name per method and seed, NAME = <method>_s<seed>):
#   pretrain/NAME/   tools/pretrain.py's OUTPUT_DIR (model_final.pth, metrics.jsonl, checkpoints)
#   weights/NAME.pkl the converted Detectron2 backbone
#   detection/NAME/  tools/train_detection.py's OUTPUT_DIR (eval_results.json, run_info.json, ...)
#   logs/NAME.<stage>.log
# A stage whose output exists is skipped and an interrupted stage resumes from its last
# checkpoint, so re-running the same command continues where it stopped.
#
# Defaults: configs/pretrain/tinyimagenet_r50_<method>.yaml (any "{method}" in --pretrain-config
# is replaced by the method) and configs/detection/voc0712_faster_rcnn_R_50_C4_24k.yaml.
# --num-gpus N > 1: torchrun with N processes for pretraining, Detectron2's launch with N GPUs
# for detection; without CUDA both stages run N CPU processes (gloo) through torchrun.
# Detection datasets are found through $DETECTRON2_DATASETS (see detection/README.md).
# Each stage's output goes to its log and to the terminal; --quiet keeps it to the log (the last
# lines of the log are printed if the stage fails).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

method="" seed=0 out="output/pipeline" num_gpus=1
pretrain_config="$root/configs/pretrain/tinyimagenet_r50_{method}.yaml"
det_config="$root/configs/detection/voc0712_faster_rcnn_R_50_C4_24k.yaml"
pretrain_opts="" det_opts="" quiet=0
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

die() { echo "run_pipeline.sh: error: $*" >&2; exit 2; }
need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --method) need "$@"; method="$2"; shift 2 ;;
        --seed) need "$@"; seed="$2"; shift 2 ;;
        --out) need "$@"; out="$2"; shift 2 ;;
        --num-gpus) need "$@"; num_gpus="$2"; shift 2 ;;
        --pretrain-config) need "$@"; pretrain_config="$2"; shift 2 ;;
        --det-config) need "$@"; det_config="$2"; shift 2 ;;
        --pretrain-opts) need "$@"; pretrain_opts="$2"; shift 2 ;;
        --det-opts) need "$@"; det_opts="$2"; shift 2 ;;
        --quiet) quiet=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

[[ -n "$method" ]] || die "--method is required"
[[ "$seed" =~ ^[0-9]+$ ]] || die "--seed '$seed': expected a non-negative integer"
[[ "$num_gpus" =~ ^[1-9][0-9]*$ ]] || die "--num-gpus '$num_gpus': expected a positive integer"
pretrain_config="${pretrain_config//\{method\}/$method}"
[[ -f "$pretrain_config" ]] || die "--pretrain-config: $pretrain_config does not exist (is '$method' a method name?)"
[[ -f "$det_config" ]] || die "--det-config: $det_config does not exist"

name="${method}_s${seed}"
pre="$out/pretrain/$name"
weights="$out/weights/$name.pkl"
det="$out/detection/$name"
logs="$out/logs"
mkdir -p "$out/pretrain" "$out/weights" "$out/detection" "$logs"

cuda="$("$python" -c 'import torch; print(int(torch.cuda.is_available()))')"
launcher=("$python")
if [[ "$num_gpus" -gt 1 ]]; then
    launcher=("$python" -m torch.distributed.run --standalone --nproc_per_node "$num_gpus")
fi

stage() { echo "[$name] $*"; }
logged() {  # logged LOG COMMAND...: run it, its output to LOG (and the terminal unless --quiet)
    local log="$1"; shift
    if [[ "$quiet" == 1 ]]; then
        "$@" >> "$log" 2>&1 || { tail -n 20 "$log" >&2; die "the command failed; its log: $log"; }
    else
        "$@" 2>&1 | tee -a "$log"
    fi
}

# 1. Pretraining. Always --resume: it starts an empty folder and continues an interrupted run
# (from its newest checkpoint, or from the start if it was stopped before the first one).
if [[ -f "$pre/model_final.pth" ]]; then
    stage "pretrain: done ($pre/model_final.pth)"
else
    stage "pretrain: $pretrain_config"
    # shellcheck disable=SC2086  # the opts are KEY VALUE words
    logged "$logs/$name.pretrain.log" "${launcher[@]}" "$root/tools/pretrain.py" --config-file "$pretrain_config" \
        --resume SEED "$seed" OUTPUT_DIR "$pre" $pretrain_opts
fi

# 2. Conversion (again when the pretrained weights are newer than the converted file).
if [[ -f "$weights" && "$weights" -nt "$pre/model_final.pth" ]]; then
    stage "convert: done ($weights)"
else
    stage "convert: $weights"
    logged "$logs/$name.convert.log" "$python" "$root/tools/convert_to_detectron2.py" --force \
        "$pre/model_final.pth" "$weights"
fi

# 3 + 4. Fine-tuning ends with an evaluation; a finished model without results is evaluated.
eval_state() {  # prints: done | evaluate | train
    "$python" - "$det" <<'EOF'
import json, os, sys
d = sys.argv[1]
path = os.path.join(d, "eval_results.json")
final = os.path.isfile(os.path.join(d, "model_final.pth"))
if os.path.isfile(path):
    r = json.load(open(path))
    if r.get("iteration") is None and final or r.get("iteration") is not None and r.get("iteration") >= r.get("max_iter", 0):
        print("done"); sys.exit()
print("evaluate" if final else "train")
EOF
}
det_launch=("$python" "$root/tools/train_detection.py")
if [[ "$num_gpus" -gt 1 && "$cuda" == 1 ]]; then
    det_launch+=(--num-gpus "$num_gpus")
elif [[ "$num_gpus" -gt 1 ]]; then
    det_launch=("${launcher[@]}" "$root/tools/train_detection.py")
fi
case "$(eval_state)" in
    done) stage "fine-tune + evaluate: done ($det/eval_results.json)" ;;
    evaluate)
        stage "evaluate: $det/model_final.pth"
        logged "$logs/$name.detection.log" "${det_launch[@]}" --eval-only --config-file "$det/config.yaml" \
            MODEL.WEIGHTS "$det/model_final.pth" OUTPUT_DIR "$det" ;;
    train)  # --resume as for pretraining
        stage "fine-tune + evaluate: $det_config"
        # shellcheck disable=SC2086
        logged "$logs/$name.detection.log" "${det_launch[@]}" --config-file "$det_config" --resume \
            MODEL.WEIGHTS "$weights" SALFMIX.METHOD "$method" SEED "$seed" \
            SALFMIX.PRETRAIN_METRICS "$pre/metrics.jsonl" OUTPUT_DIR "$det" $det_opts ;;
esac
[[ "$(eval_state)" == done ]] || die "$det: no final evaluation results after fine-tuning (see $logs/$name.detection.log)"
stage "results: $det/eval_results.json"
