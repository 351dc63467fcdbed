#!/usr/bin/env bash
# One prepared run for a lent GPU machine (~10 minutes): every figure under one folder.
#
#   bash bench/gpu_report.sh            # on the GPU machine; results under $OUT (or results/gpu-<date>)
#   bash bench/gpu_report.sh --dry-run  # print the plan, then run the smallest version on CPU
#
# The GPU plan:
#   1. install carried wheels (.whl/*.whl, e.g. diffusers) into /tmp/site, if any
#   2. record the machine (nvidia-smi, versions)
#   3. cost model of the full UNets (CPU, fake tensors; runs beside the GPU steps)
#   4. TensorRT FP16 engines for the full UNets and VAE, if tensorrt and export/build_engines.py exist
#   5. full-size network latency, torch eager fp16 vs torch.compile, interleaved:
#      stage-1 UNet step, stage-2 UNet step, stage-1 / stage-2 VAE decodes (random weights)
#   6. the full pipeline once in eager fp16 (2 steps): per-stage times and peak memory
#   7. kernel benchmarks (bench/kernels.py, bench/kernels_gaussians.py) if present
#   8. cost model beside the measured step times, and the stage plot
# Each step has its own time limit, so one that overruns leaves the others' results.
# $OUT gets report.log (everything printed), cost.json, networks.json, pipeline.json,
# stages.png and the kernel JSONs: the device tool brings back at most 8 files.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu_report.sh [--dry-run]" >&2; exit 2 ;;
esac

PY=${PYTHON:-python3}
OUT=${OUT:-results/gpu-$(date -u +%Y%m%dT%H%M)}
mkdir -p "$OUT"
# One log for everything: the device tool brings back at most 8 files from $OUT.
exec > >(tee -a "$OUT/report.log") 2>&1
export PYTHONUNBUFFERED=1
FAILED=()

if [[ $DRY == 1 ]]; then
  # Smallest version: tiny preset, CPU, 1 iteration, no warm-up, 1 step, eager only
  # (torch.compile on CPU costs minutes of C++ compilation: the GPU run covers it).
  PRESET=tiny; DEV=cpu; DTYPE=fp32; ITERS=1; WARMUP=0; STEPS=1; COMPARE=torch; T=120
else
  PRESET=full; DEV=cuda; DTYPE=fp16; ITERS=3; WARMUP=1; STEPS=2; COMPARE=torch,compiled; T=300
  # max-autotune's GEMM/conv search over Triton templates takes far longer than the budget
  # on two 1.5 B UNets; ATen choices keep Inductor's fusions and compile in minutes.
  export TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_BACKENDS=${TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_BACKENDS:-ATEN}
  export TORCHINDUCTOR_MAX_AUTOTUNE_CONV_BACKENDS=${TORCHINDUCTOR_MAX_AUTOTUNE_CONV_BACKENDS:-ATEN}
fi

step() {  # step NAME SECONDS CMD...: run with a time limit, go on after a failure
  local name=$1 limit=$2; shift 2
  echo "== [$name] (limit ${limit}s) $*"
  timeout "$limit" "$@"
  local rc=$?
  [[ $rc == 0 ]] || { echo "!! [$name] exited $rc"; FAILED+=("$name:$rc"); }
}

echo "plan: preset=$PRESET device=$DEV dtype=$DTYPE iters=$ITERS warmup=$WARMUP steps=$STEPS compare=$COMPARE out=$OUT"
echo "  1 wheels  2 machine  3 cost model (bg)  4 tensorrt engines (if available)"
echo "  5 networks $COMPARE  6 pipeline torch  7 kernels (if present)  8 cost vs measured + plot"

# 1. carried wheels (pure-python packages the GPU image lacks: diffusers, importlib_metadata, trimesh)
if compgen -G ".whl/*.whl" > /dev/null; then
  echo "== [wheels] installing $(ls .whl/*.whl | wc -l) wheel(s) into /tmp/site"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "!! wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# 2. the machine
echo "== [machine]"
date -u; uname -a
command -v nvidia-smi > /dev/null && nvidia-smi
$PY -c 'import torch, sys; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'
$PY -c 'import diffusers; print("diffusers", diffusers.__version__)'
$PY -c 'import tensorrt; print("tensorrt", tensorrt.__version__)' 2>&1 | tail -1

# 3. cost model: CPU only, so it runs beside the GPU steps
COST_LOG=$(mktemp)
$PY -m bench.cost_model --preset "$PRESET" --out "$OUT/cost.json" > "$COST_LOG" 2>&1 &
COST_PID=$!

# 4. TensorRT engines, only where both the library and the builder exist
if $PY -c 'import tensorrt' 2> /dev/null && [[ -f export/build_engines.py ]]; then
  step engines $T $PY -m export.build_engines --preset "$PRESET" --precision fp16 --out /tmp/hi3d_engines
  COMPARE_TRT=1
else
  echo "== [engines] skipped: tensorrt or export/build_engines.py missing"
  COMPARE_TRT=0
fi

# 5. full-size networks alone: eager vs compiled (the first compiled call compiles)
step networks $T $PY -m bench.latency --preset "$PRESET" --device "$DEV" --dtype "$DTYPE" --networks-only \
  --compare "$COMPARE" --warmup "$WARMUP" --iters "$ITERS" --out "$OUT/networks.json"
if [[ $COMPARE_TRT == 1 ]]; then
  step networks_trt $T $PY -m bench.latency --preset "$PRESET" --device "$DEV" --dtype "$DTYPE" --networks-only \
    --compare torch,tensorrt --artifacts /tmp/hi3d_engines --warmup "$WARMUP" --iters "$ITERS" --out "$OUT/networks_trt.json"
fi

# 6. the whole pipeline once, eager: where the time goes and peak memory
step pipeline $T $PY -m bench.latency --preset "$PRESET" --device "$DEV" --dtype "$DTYPE" --backend torch \
  --warmup 0 --iters 1 --steps "$STEPS" --out "$OUT/pipeline.json"

# 7. kernel benchmarks of the kernels helpers, when their scripts exist
for k in kernels kernels_gaussians; do
  if [[ -f bench/$k.py ]]; then
    if [[ $DRY == 1 ]]; then echo "== [$k] would run: $PY -m bench.$k --out $OUT/$k.json"
    else step "$k" 120 $PY -m "bench.$k" --out "$OUT/$k.json"; fi
  else
    echo "== [$k] skipped: bench/$k.py not in this checkout"
  fi
done

# 8. bounds beside measured times, and the plot
wait $COST_PID || FAILED+=("cost_model:$?")
echo "== [cost_model]"; cat "$COST_LOG"; rm -f "$COST_LOG"
[[ -f $OUT/networks.json ]] && step cost_vs_networks 120 $PY -m bench.cost_model --preset "$PRESET" \
  --latency "$OUT/networks.json"
[[ -f $OUT/pipeline.json ]] && step plot 60 $PY -m bench.plots stages "$OUT/pipeline.json" --out "$OUT/stages.png"

echo "results in $OUT:"; ls "$OUT"
if (( ${#FAILED[@]} )); then echo "failed steps: ${FAILED[*]}"; exit 1; fi
echo "all steps passed"
