"""The CUDA C kernels' logic, checked without a GPU: kernels/cuda/hashgrid.cu is compiled
as host C++ with g++ (CUDA keywords mapped to nothing, the launch grid walked in loops,
atomicAdd as a plain add) and compared with the torch reference. The GPU run of the same
source is tests/kernels/test_hashgrid_gpu.py."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from hi3d.kernels.hashgrid import HashGridConfig, level_table
from hi3d.kernels.hashgrid_ref import hashgrid_encode_ref

SOURCE = Path(__file__).resolve().parents[2] / "kernels" / "cuda" / "hashgrid.cu"

HARNESS = r"""
#include <cmath>
#include <cstddef>
struct Idx { unsigned x, y, z; };
static Idx blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
static inline float atomicAdd(float* p, float v) { float old = *p; *p += v; return old; }
#include "hashgrid.cu"

static void walk(int n, int n_levels, void (*body)(void*), void* ctx) {
    blockDim.x = 32;
    for (unsigned by = 0; by < (unsigned)n_levels; ++by)
        for (unsigned bx = 0; bx < (unsigned)(n + 31) / 32; ++bx)
            for (unsigned tx = 0; tx < 32; ++tx) {
                blockIdx = {bx, by, 0}; threadIdx = {tx, 0, 0};
                body(ctx);
            }
}
struct Args { const float *x, *table; const int* levels; const float* grad_out;
              float *out, *grad_table, *grad_x; int n, n_levels, f, need_dx; };
static void fwd_body(void* p) { Args* a = (Args*)p;
    hashgrid_fwd(a->x, a->table, a->levels, a->out, a->n, a->n_levels, a->f); }
static void bwd_body(void* p) { Args* a = (Args*)p;
    hashgrid_bwd(a->x, a->table, a->levels, a->grad_out, a->grad_table, a->grad_x,
                 a->n, a->n_levels, a->f, a->need_dx); }
extern "C" void host_fwd(const float* x, const float* table, const int* levels, float* out,
                         int n, int n_levels, int f) {
    Args a{x, table, levels, nullptr, out, nullptr, nullptr, n, n_levels, f, 0};
    walk(n, n_levels, fwd_body, &a);
}
extern "C" void host_bwd(const float* x, const float* table, const int* levels,
                         const float* grad_out, float* grad_table, float* grad_x,
                         int n, int n_levels, int f, int need_dx) {
    Args a{x, table, levels, grad_out, nullptr, grad_table, grad_x, n, n_levels, f, need_dx};
    walk(n, n_levels, bwd_body, &a);
}
"""


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory) -> ctypes.CDLL:
    if shutil.which("g++") is None:
        pytest.skip("g++ not found: cannot compile the CUDA source as host code")
    build = tmp_path_factory.mktemp("cuda-host")
    (build / "harness.cpp").write_text(HARNESS)
    lib = build / "libhashgrid_host.so"
    cmd = ["g++", "-O1", "-std=c++17", "-shared", "-fPIC", "-x", "c++", f"-I{SOURCE.parent}",
           str(build / "harness.cpp"), "-o", str(lib)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"g++ failed on hashgrid.cu:\n{done.stderr}"
    return ctypes.CDLL(str(lib))


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


@pytest.mark.parametrize("cfg", [
    HashGridConfig(n_levels=4, n_features_per_level=2, log2_hashmap_size=10,
                   base_resolution=4, max_resolution=32),
    HashGridConfig(n_levels=3, n_features_per_level=4, log2_hashmap_size=9,
                   base_resolution=3, max_resolution=20),
])
def test_cuda_source_matches_reference(host_lib, cfg):
    g = torch.Generator().manual_seed(7)
    f = cfg.n_features_per_level
    table = torch.randn(cfg.total_rows, f, generator=g)
    x = torch.cat([torch.rand(200, 3, generator=g),
                   torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [-0.3, 0.5, 1.2]])])
    n, levels = x.shape[0], level_table(cfg, "cpu").contiguous()
    grad_out = torch.randn(n, cfg.out_dim, generator=g)

    out = torch.zeros(n, cfg.out_dim)
    host_lib.host_fwd(_ptr(x), _ptr(table), _ptr(levels), _ptr(out), n, cfg.n_levels, f)
    grad_table, grad_x = torch.zeros_like(table), torch.zeros_like(x)
    host_lib.host_bwd(_ptr(x), _ptr(table), _ptr(levels), _ptr(grad_out), _ptr(grad_table),
                      _ptr(grad_x), n, cfg.n_levels, f, 1)

    xr, tr = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    ref = hashgrid_encode_ref(xr, tr, cfg)
    ref.backward(grad_out)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_table, tr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x, xr.grad, rtol=1e-4, atol=1e-4 * xr.grad.abs().max().item())
    assert grad_x[-1, 0] == 0 and grad_x[-1, 2] == 0  # clamped axes
