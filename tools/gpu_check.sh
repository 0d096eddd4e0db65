#!/usr/bin/env bash
# GPU validation kit: proves the CUDA path of the project and measures it, on one machine, in at
# most 8 minutes. Every step runs under its own time limit, records its status, and the next
# step runs whatever happened; the summary is $OUT/gpu_check.md.
#
#   make gpu-wheels                                          # once, on a machine with network
#   bash tools/gpu_check.sh                                  # on the CUDA machine (make gpu-check)
#   GPU_CHECK_DEVICE=cpu bash tools/gpu_check.sh --smoke     # the same steps, tiny, on the CPU
#
# Steps: preflight (every module the steps import is importable or carried in .wheels/: else one
# line naming it and the wheel to carry), install (from .wheels/ into a Python that lacks the
# project's packages: --no-index --no-deps, torch untouched; --smoke only verifies the wheels),
# tests (the GPU-marked tests),
# bench_throughput, detection, bench_pretrain, bench_mixing, bench_suspects, bench_compile, then
# the summary. Exit status 0 only if every step passed.
#
# Environment: OUT (results; default output/gpu_check), GPU_CHECK_DEVICE (cuda | cpu; cpu hides
# the GPUs), GPU_CHECK_PYTHON (default .venv/bin/python if it exists, else python3),
# GPU_CHECK_BUDGET (seconds for everything; default 470, 420 with --smoke), GPU_CHECK_WORK
# (scratch folder; default a new temporary one, removed at the end).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

smoke=0
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "error: unknown option $arg (expected --smoke or --help)" >&2; exit 2 ;;
    esac
done
device="${GPU_CHECK_DEVICE:-cuda}"
case "$device" in
    cuda|cpu) ;;
    *) echo "error: GPU_CHECK_DEVICE=$device: expected cuda or cpu" >&2; exit 2 ;;
esac
if [ -n "${GPU_CHECK_PYTHON:-}" ]; then py="$GPU_CHECK_PYTHON"
elif [ -x .venv/bin/python ]; then py="$root/.venv/bin/python"
else py="$(command -v python3)"; fi
if [ "$device" = cuda ] && ! "$py" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2> /dev/null; then
    echo "error: $py sees no CUDA device (or has no torch); on a CPU: GPU_CHECK_DEVICE=cpu bash tools/gpu_check.sh --smoke" >&2
    exit 2
fi
budget="${GPU_CHECK_BUDGET:-$([ "$smoke" = 1 ] && echo 420 || echo 470)}"
out="${OUT:-output/gpu_check}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
if [ -n "${GPU_CHECK_WORK:-}" ]; then
    work="$GPU_CHECK_WORK"; mkdir -p "$work"
else
    work="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"; trap 'rm -rf "$work"' EXIT
fi
rm -f "$out"/{steps.tsv,gpu_check.md,env.txt,install.log,tests.log,bench.log,detection.log}

export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [ "$device" = cpu ]; then
    # One thread per process: on a small shared CPU, more spin and wait on each other.
    export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
reserve=10  # seconds kept for the summary
deadline=$budget  # bash's SECONDS counts from the start of this script
failures=0

# step NAME LIMIT LOG COMMAND...: run COMMAND under `timeout`, its output appended to $out/LOG
# after a "=== step NAME" line; one line in steps.tsv; its BENCH and error lines echoed here.
step() {
    local name=$1 limit=$2 log=$3 rc status note="" start lines
    shift 3
    local left=$((deadline - reserve - SECONDS))
    if [ "$left" -lt 5 ]; then
        printf '%s\tnot run\t0\t%s\t%s\tno time left in the %s s budget\n' "$name" "$limit" "$log" "$budget" >> "$out/steps.tsv"
        echo "--- $name: not run (no time left)"; failures=$((failures + 1)); return
    fi
    [ "$limit" -gt "$left" ] && { limit=$left; note="limit cut to the time left"; }
    echo "=== step $name" >> "$out/$log"
    lines=$(wc -l < "$out/$log")
    echo "--- $name (limit ${limit} s) ..."
    start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >> "$out/$log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status=timeout; failures=$((failures + 1)) ;;
        *) status="failed (exit $rc)"; failures=$((failures + 1)) ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" "$limit" "$log" "$note" >> "$out/steps.tsv"
    tail -n +"$((lines + 1))" "$out/$log" | grep -E '^(BENCH |error:)' || true
    echo "--- $name: $status in $((SECONDS - start)) s"
}

# skip NAME LOG WHY: record a step that does not apply here.
skip() {
    printf '%s\tskipped\t0\t0\t%s\t%s\n' "$1" "$2" "$3" >> "$out/steps.tsv"
    echo "--- $1: skipped ($3)"
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "mode: $([ "$smoke" = 1 ] && echo "smoke (tiny sizes)" || echo full), device $device, budget ${budget} s"
    echo "host: $(uname -srm), $(getconf _NPROCESSORS_ONLN) CPUs"
    command -v nvidia-smi > /dev/null && [ "$device" = cuda ] && \
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu: /'
    "$py" -c "import sys, torch
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'
print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda,
      '| cudnn', torch.backends.cudnn.version(), '| device', name)" 2>&1 | tail -1
} > "$out/env.txt"
cat "$out/env.txt"

importable="import torch, pretrain.mixing, detection, detectron2"
# The step limits add up to the budget less the summary's reserve (460 s full: every step gets
# its time within a lent GPU's 15 minutes, start-up and transfers included; 410 s smoke, which
# runs on a CPU shared with other work).
step preflight 30 install.log "$py" -m salfmix.install.wheels preflight
if [ "$smoke" = 1 ]; then
    if [ -f .wheels/SHA256SUMS ]; then
        step install 60 install.log "$py" -m salfmix.install.wheels verify --pip-check
    else
        skip install install.log "no .wheels/ (make gpu-wheels): the wheels are not checked"
    fi
elif "$py" -c "$importable" > /dev/null 2>&1; then
    skip install install.log "this Python already has the project's packages"
else
    step install 90 install.log "$py" -m salfmix.install.wheels install
fi

if [ "$smoke" = 1 ]; then
    data_opts=(--batch 8 --size 32 --arch resnet20)
    step tests 70 tests.log "$py" -m pytest -q -rs -m gpu -p no:cacheprovider --continue-on-collection-errors tests/pretrain
    step bench_throughput 30 bench.log "$py" -m salfmix.bench.throughput --device "$device" --batch 2 --size 32 --steps 1 --warmup 1
    step detection 110 detection.log "$py" -m salfmix.bench.detection --work "$work/detection" --device "$device" \
        --smoke --iters 4 --batch 1 --pretrain-epochs 0 --run-timeout 90
    step bench_pretrain 40 bench.log "$py" -m salfmix.bench.pretrain --data "$work/bench_data" "${data_opts[@]}" --steps 1 \
        --loader-batch 8 --loader-batches 1 --loader-workers 0 --loader-repeats 1 \
        --methods none cutout salfmix mixup saliencymix cutmix hybridmix_v1 hybridmix_v2 hybridmix_v3 --project-epochs 300
    step bench_mixing 20 bench.log "$py" -m salfmix.bench.mixing --device "$device" --batch 4 --size 32 --repeats 1
    step bench_suspects 20 bench.log "$py" -m salfmix.bench.pretrain --data "$work/bench_data" "${data_opts[@]}" --steps 1 \
        --skip-steps --skip-loader --suspects --suspect-steps 1 --sync-steps 2
    step bench_compile 30 bench.log "$py" -m salfmix.bench.throughput --device "$device" --arch resnet20 --classes 10 \
        --batch 4 --size 32 --steps 2 --warmup 1 --compile --compile-backend aot_eager
else
    paper=(none cutout salfmix mixup saliencymix cutmix hybridmix_v1 hybridmix_v2 hybridmix_v3)
    step tests 60 tests.log "$py" -m pytest -q -rs -m gpu -p no:cacheprovider --continue-on-collection-errors tests/pretrain
    step bench_throughput 30 bench.log "$py" -m salfmix.bench.throughput --device "$device"
    step detection 100 detection.log "$py" -m salfmix.bench.detection --work "$work/detection" --device "$device" \
        --iters 60 --batch 8 --pretrain-epochs 1 --run-timeout 60
    step bench_pretrain 45 bench.log "$py" -m salfmix.bench.pretrain --data "$work/bench_data" --batch 128 --steps 3 \
        --opts MODEL.CHANNELS_LAST True --methods "${paper[@]}" --project-epochs 300 --loader-batches 10
    step bench_mixing 25 bench.log "$py" -m salfmix.bench.mixing --device "$device" --repeats 3
    step bench_suspects 35 bench.log "$py" -m salfmix.bench.pretrain --data "$work/bench_data" --batch 128 --steps 3 \
        --opts MODEL.CHANNELS_LAST True --skip-steps --skip-loader --suspects --suspect-steps 5
    step bench_compile 45 bench.log "$py" -m salfmix.bench.throughput --device "$device" --compile
fi

if [ "$smoke" = 1 ]; then
    title="GPU check (smoke, $device)"
    note="Smoke run: tiny sizes and models, so that every step runs quickly; its numbers only show that the steps work."
else
    title="GPU check ($device)"; note=""
fi
"$py" -m salfmix.bench.gpu_report --out "$out" --title "$title" --note "$note" > /dev/null \
    || { echo "error: the summary could not be written" >&2; failures=$((failures + 1)); }
echo "=== summary: $out/gpu_check.md ($failures step(s) did not pass, $SECONDS s in all)"
[ -f "$out/gpu_check.md" ] && awk '/^## Steps/ {on = 1; next} /^## / {on = 0} on && NF' "$out/gpu_check.md"
[ "$failures" -eq 0 ]
