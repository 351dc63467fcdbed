#!/usr/bin/env bash
# One prepared run for a lent GPU machine (~10 minutes): every figure under one folder.
#
#   bash bench/gpu_report.sh            # on the GPU machine; results under $OUT (or results/gpu-<date>)
#   bash bench/gpu_report.sh --dry-run  # print the plan, then run the smallest version on CPU
#
# The GPU plan (each step has its own time limit, so one that overruns leaves the others'
# results; the limits add up to under 10 minutes):
#   1. install carried wheels (.whl/*.whl: diffusers, importlib_metadata, trimesh) into /tmp/site
#   2. record the machine (nvidia-smi, versions)
#   3. the full pipeline once in eager fp16 (2 steps, random weights): per-stage times, peak memory;
#      then once per other memory plan (staged, lean): per-stage torch.cuda.max_memory_allocated and
#      times (printed; the cost of each plan is its time over resident's), while the CPU estimates
#      every plan (bench/memory.py -> memory.json) to compare with
#   4. kernel benchmarks (bench/kernels.py, bench/kernels_gaussians.py), where present
#   5. full-size networks alone, torch eager fp16 vs torch.compile, interleaved: stage-1 and
#      stage-2 UNet steps, stage-1 and stage-2 VAE decodes; beside it, on the CPU, the cost
#      model (FLOPs, bytes, H100 bounds) with these times
#   6. the same networks on TensorRT fp16 engines vs eager, if tensorrt is importable (the lent
#      machines lack it; hi3d.export.backends exports, builds and caches the engines), with the
#      engine build seconds, host peak RSS and GPU peak memory of the step
#   7. the stage plot
# $OUT gets report.log (everything printed), pipeline.json, memory.json, networks.json, cost.json,
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
  PLANS=lean  # one plan: the dry run checks the path, not the comparison
else
  PRESET=full; DEV=cuda; DTYPE=fp16; ITERS=3; WARMUP=1; STEPS=2; COMPARE=torch,compiled; T=300
  PLANS="staged lean"
  # max-autotune's GEMM/conv search over Triton templates takes far longer than the budget
  # on two 1.5 B UNets; ATen choices keep Inductor's fusions and compile in minutes.
  export TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_BACKENDS=${TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_BACKENDS:-ATEN}
  export TORCHINDUCTOR_MAX_AUTOTUNE_CONV_BACKENDS=${TORCHINDUCTOR_MAX_AUTOTUNE_CONV_BACKENDS:-ATEN}
fi

step() {  # step NAME SECONDS CMD...: run with a time limit, go on after a failure
  local name=$1 limit=$2; shift 2
  echo "== [$name] (limit ${limit}s) $*"
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "-- [$name] took $((SECONDS - t0)) s"
  [[ $rc == 0 ]] || { echo "!! [$name] exited $rc"; FAILED+=("$name:$rc"); }
}

echo "plan: preset=$PRESET device=$DEV dtype=$DTYPE iters=$ITERS warmup=$WARMUP steps=$STEPS compare=$COMPARE out=$OUT"
echo "  1 wheels  2 machine  3 pipeline torch (+ memory plans: $PLANS, estimate)  4 kernels (if present)"
echo "  5 networks $COMPARE + cost model  6 networks torch,tensorrt (if tensorrt)  7 plot"

# 1. carried wheels (pure-python packages the GPU image lacks)
if [[ $DRY == 1 ]]; then
  echo "== [wheels] dry run: would install $(compgen -G '.whl/*.whl' | wc -l) wheel(s) from .whl/ into /tmp/site"
elif compgen -G ".whl/*.whl" > /dev/null; then
  echo "== [wheels] installing $(ls .whl/*.whl | wc -l) wheel(s) into /tmp/site"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "!! wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# this checkout as the hi3d package, without installing it (the lent image may lack setuptools):
# a folder of links laid out as pyproject.toml's package-dir lays it out
if ! $PY -c 'import hi3d.engine' 2> /dev/null; then
  mkdir -p /tmp/hi3d_src/hi3d
  ln -sf "$PWD"/hi3d/*.py /tmp/hi3d_src/hi3d/
  for p in engine export kernels serving bench; do ln -sfn "$PWD/$p" "/tmp/hi3d_src/hi3d/$p"; done
  export PYTHONPATH=/tmp/hi3d_src${PYTHONPATH:+:$PYTHONPATH}
fi

# 2. the machine
echo "== [machine] (after $SECONDS s)"
date -u; uname -a
command -v nvidia-smi > /dev/null && nvidia-smi
$PY - <<'PYEOF'
import sys, importlib.metadata as md
import torch
print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for name in ("diffusers", "onnxruntime", "onnxruntime-gpu", "tensorrt", "triton"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
PYEOF

# 3. the whole pipeline once, eager: where the time goes, and peak memory
step pipeline $((T / 2)) $PY -m hi3d.bench.latency --preset "$PRESET" --device "$DEV" --dtype "$DTYPE" --backend torch \
  --warmup 0 --iters 1 --steps "$STEPS" --out "$OUT/pipeline.json"

# 3b. the other memory plans, one run each (printed to report.log), beside the CPU estimate
#     (the dry run skips the estimate: fake tensors cost ~1 ms an op, and tests/test_memory_estimate.py covers it)
MEM_LOG=$(mktemp)
MEM_CMD=($PY -m hi3d.bench.memory --preset "$PRESET" --dtype "$DTYPE" --out "$OUT/memory.json")
if [[ $DRY == 1 ]]; then echo "dry run: would run ${MEM_CMD[*]}" > "$MEM_LOG"; MEM_PID=
else timeout $T "${MEM_CMD[@]}" > "$MEM_LOG" 2>&1 & MEM_PID=$!; fi
for plan in $PLANS; do
  step "pipeline_$plan" $((T / 2)) $PY -m hi3d.bench.latency --preset "$PRESET" --device "$DEV" --dtype "$DTYPE" \
    --backend torch --memory-plan "$plan" --warmup 0 --iters 1 --steps "$STEPS"
done
[[ -z $MEM_PID ]] || wait $MEM_PID || FAILED+=("memory:$?")
echo "== [memory] estimate (allocated tensors; compare with the peak CUDA MiB rows above)"; cat "$MEM_LOG"; rm -f "$MEM_LOG"

# 4. the kernels helpers' benchmarks, when their scripts exist (each takes --out JSON)
for k in kernels kernels_gaussians; do
  if [[ ! -f bench/$k.py ]]; then echo "== [$k] skipped: bench/$k.py not in this checkout"
  elif [[ $DRY == 1 ]]; then echo "== [$k] dry run: would run $PY -m hi3d.bench.$k --out $OUT/$k.json"
  else step "$k" 45 $PY -m "hi3d.bench.$k" --out "$OUT/$k.json"; fi
done

# 5. full-size networks alone: eager vs compiled (the first compiled call compiles); the
#    cost model counts on the CPU meanwhile, then its bounds are printed beside the times
COST_LOG=$(mktemp)
timeout $T $PY -m hi3d.bench.cost_model --preset "$PRESET" --out "$OUT/cost.json" > "$COST_LOG" 2>&1 &
COST_PID=$!
step networks $T $PY -m hi3d.bench.latency --preset "$PRESET" --device "$DEV" --dtype "$DTYPE" --networks-only \
  --compare "$COMPARE" --warmup "$WARMUP" --iters "$ITERS" --out "$OUT/networks.json"
wait $COST_PID || FAILED+=("cost_model:$?")
echo "== [cost_model]"; cat "$COST_LOG"; rm -f "$COST_LOG"
[[ -f $OUT/networks.json && -f $OUT/cost.json ]] && step cost_vs_measured 60 $PY -m hi3d.bench.cost_model --preset "$PRESET" \
  --costs "$OUT/cost.json" --latency "$OUT/networks.json" --out "$OUT/cost.json"

# 6. TensorRT fp16 engines (exported, built and cached by the backend factory, which prints
#    each engine's build seconds); beside them the host's peak RSS (/usr/bin/time) and the
#    GPU's peak memory (nvidia-smi every 0.5 s) over export + engine builds + timing
if $PY -c 'import tensorrt' 2> /dev/null; then
  GPU_LOG=$(mktemp)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$GPU_LOG" 2> /dev/null &
  SMI_PID=$!
  TIMED=(); [[ -x /usr/bin/time ]] && TIMED=(/usr/bin/time -f "== [networks_trt] host peak RSS %M KiB over %e s")
  step networks_trt $T "${TIMED[@]}" $PY -m hi3d.bench.latency --preset "$PRESET" --device "$DEV" --dtype "$DTYPE" \
    --networks-only --compare torch,tensorrt --artifacts /tmp/hi3d_build --warmup "$WARMUP" --iters "$ITERS" \
    --out "$OUT/networks_trt.json"
  kill "$SMI_PID" 2> /dev/null
  echo "== [networks_trt] GPU memory used, peak: $(sort -n "$GPU_LOG" | tail -1) MiB (builder included)"
  rm -f "$GPU_LOG"
else
  echo "== [networks_trt] skipped: tensorrt is not importable here"
fi

# 7. the plot
[[ -f $OUT/pipeline.json ]] && step plot 60 $PY -m hi3d.bench.plots stages "$OUT/pipeline.json" --out "$OUT/stages.png"

echo "results in $OUT:"; ls "$OUT"
if (( ${#FAILED[@]} )); then echo "failed steps: ${FAILED[*]}"; exit 1; fi
echo "all steps passed in $SECONDS s"
