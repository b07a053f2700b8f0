#!/usr/bin/env bash
# Every benchmark of issue 13 on a GPU machine (one H100 or H200, 16 CPU cores) in one call, then one table.
#
#   bash benchmarks/gpu.sh                  # from the repository root; about 7.5 minutes at most
#   SMALL=1 bash benchmarks/gpu.sh          # rehearsal on a CPU with tiny sizes (a few minutes on 2 cores)
#   ONLY=train,render bash benchmarks/gpu.sh    # a subset (names: smpl render model train input occlusion;
#                                               the other logs in $OUT are kept for the table)
#
# Each benchmark runs under its own timeout (they add up to 450 s), its whole output goes to $OUT/NAME.log
# (OUT defaults to /tmp/pare_gpu_bench; at most 8 files), and one that fails or times out is reported as such in
# the table instead of stopping the rest. The table (benchmarks/gpu_summary.py) also goes to $OUT/summary.txt.
# PYTHON picks the interpreter (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-/tmp/pare_gpu_bench}
SMALL=${SMALL:-0}
ONLY=${ONLY:-}
if [[ ${1:-} == --small ]]; then SMALL=1; fi
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
NAMES="smpl render model train input occlusion"
if [[ -z $ONLY ]]; then for name in $NAMES; do rm -f "$OUT/$name.log"; done; fi  # ONLY keeps the others' logs

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); host ${HOSTNAME:-?}; $(nproc) CPU cores; python: $PYTHON"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/nvidia-smi: /'
    else
        echo "nvidia-smi: not found"
    fi
    # No jax.devices() here: that would start the GPU backend once more for nothing.
    "$PYTHON" -c 'import importlib.util as u, jax
print("jax:", jax.__version__)
print("smplx reference:", "yes" if u.find_spec("torch") and u.find_spec("smplx") else "no")'
} >"$OUT/env.log" 2>&1 || true
cat "$OUT/env.log"
NO_SMPLX=--no-smplx
if grep -q "smplx reference: yes" "$OUT/env.log"; then NO_SMPLX=; fi

# bench NAME SECONDS ARGS...: runs "$PYTHON ARGS..." under a timeout into $OUT/NAME.log and appends its exit
# status, which gpu_summary.py reads (124 or 137: timed out).
bench() {
    local name=$1 seconds=$2 start rc=0
    shift 2
    if [[ -n $ONLY && ,$ONLY, != *,$name,* ]]; then return; fi
    echo "== $name (at most $seconds s): $PYTHON $*"
    start=$SECONDS
    timeout -k 5 "$seconds" "$PYTHON" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
    echo "[gpu.sh] exit $rc after $((SECONDS - start)) s" >>"$OUT/$name.log"
    echo "   exit $rc after $((SECONDS - start)) s"
}

start_all=$SECONDS
if [[ $SMALL == 1 ]]; then
    # Tiny sizes: checks that every script runs and that the table parses; the figures mean nothing.
    bench smpl 120 benchmarks/smpl_forward.py --batches 64 --repeats 3 $NO_SMPLX
    bench render 240 benchmarks/render.py --batch 8 --repeats 2 --reference-rows 2
    bench model 240 benchmarks/model_forward.py --backbones hrnet_w8 --batches 1 --dtypes bfloat16 --repeats 1 \
        --no-reference
    bench train 240 benchmarks/train_step.py --backbone hrnet_tiny --batch 2 --size 64 --steps 1 --dtype bfloat16 \
        --no-reference
    bench input 240 benchmarks/input_pipeline.py --examples 16 --batch 8 --batches 3 --size 64
    bench occlusion 240 benchmarks/occlusion.py --max-positions 16 --repeats 1
else
    # Full sizes; the timeouts add up to 450 s (7.5 min), compilation included.
    bench smpl 35 benchmarks/smpl_forward.py --batches 4096 $NO_SMPLX
    bench render 80 benchmarks/render.py --batch 512 --reference-rows 4
    bench model 80 benchmarks/model_forward.py --backbones hrnet_w32 --batches 256 --dtypes bfloat16 --repeats 5 \
        --no-reference
    bench train 125 benchmarks/train_step.py --batch 64 --dtype bfloat16 --steps 10 --no-reference
    bench input 55 benchmarks/input_pipeline.py --examples 64 --batch 64 --batches 30 --size 224
    bench occlusion 75 benchmarks/occlusion.py --repeats 2
fi
echo "all benchmarks: $((SECONDS - start_all)) s"

SUMMARY_FLAGS=
if [[ $SMALL == 1 ]]; then SUMMARY_FLAGS=--small; fi
"$PYTHON" benchmarks/gpu_summary.py "$OUT" $SUMMARY_FLAGS | tee "$OUT/summary.txt"
