#!/usr/bin/env bash
# One prepared GPU run of the kernel work: AOT build, GPU parity tests, benchmark.
#   bash bench/kernels_gpu_check.sh [OUT_DIR]     (OUT_DIR defaults to results/)
# Needs hi3d installed (pip install -e .), a CUDA torch, triton, and for impl=cuda cupy-cuda13x + nvcc + cmake.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$out/gpu.txt"
cmake -S . -B build && cmake --build build 2>&1 | tee "$out/cmake.log"
python -m pytest tests/kernels -q -rs 2>&1 | tee "$out/pytest_kernels.log"
python -m hi3d.bench.kernels --device cuda --out "$out/kernels.json" 2>&1 | tee "$out/bench_kernels.log"
