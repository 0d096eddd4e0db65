#!/usr/bin/env bash
# Several methods and seeds through the whole pipeline, then the side-by-side report.
#
#   tools/run_methods.sh --methods "none cutmix salfmix hybridmix_v3" --seeds "0 1 2" \
#       [--out output/pipeline] [--report-out DIR] [--note TEXT] [any tools/run_pipeline.sh option]
#
# Each (method, seed) runs through tools/run_pipeline.sh with the other options passed on
# unchanged (--num-gpus, --pretrain-config with "{method}", --det-config, --pretrain-opts,
# --det-opts, --quiet); finished stages are skipped, so the same command continues an interrupted study.
# Then tools/voc_report.py compares the runs (mean ± std over seeds) and writes
# report.{md,csv,json,png} to --report-out (default: OUT/report).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

die() { echo "run_methods.sh: error: $*" >&2; exit 2; }
need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }

methods="" seeds="0" out="output/pipeline" report_out="" note=""
passed=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --methods) need "$@"; methods="$2"; shift 2 ;;
        --seeds) need "$@"; seeds="$2"; shift 2 ;;
        --out) need "$@"; out="$2"; passed+=(--out "$2"); shift 2 ;;
        --report-out) need "$@"; report_out="$2"; shift 2 ;;
        --note) need "$@"; note="$2"; shift 2 ;;
        --quiet) passed+=(--quiet); shift ;;
        --method|--seed) die "$1: use --methods / --seeds (lists) here" ;;
        --num-gpus|--pretrain-config|--det-config|--pretrain-opts|--det-opts)
            need "$@"; passed+=("$1" "$2"); shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[[ -n "$methods" ]] || die "--methods is required (e.g. --methods \"none hybridmix_v3\")"
report_out="${report_out:-$out/report}"

runs=()
for method in $methods; do
    for seed in $seeds; do
        bash "$here/run_pipeline.sh" --method "$method" --seed "$seed" "${passed[@]}"
        runs+=("$out/detection/${method}_s${seed}")
    done
done

note_args=()
[[ -n "$note" ]] && note_args=(--note "$note")
"$python" "$root/tools/voc_report.py" "${runs[@]}" --out "$report_out" "${note_args[@]}"
