"""Load our CUDA C kernels (kernels/cuda/*.cu) with CuPy and launch them on torch tensors.

The fast path loads what ``CMakeLists.txt`` built ahead of time
(``build/kernels/<name>.fatbin``: SASS for sm_80/sm_90 plus PTX) with
``cupy.RawModule(path=...)`` (the driver's cuModuleLoad takes fatbins as well as cubins); when that file is missing it compiles the ``.cu`` source
with NVRTC through ``cupy.RawModule(code=...)`` and says so. CuPy is a GPU-only extra:
this module is imported only when ``impl="cuda"`` is used, never on CPU.

Kernels run on torch's current stream and read/write torch's memory directly (pointers
pass as 64-bit integers, which CuPy forwards by value).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import cupy
import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

CUDA_SOURCE_DIR = Path(__file__).resolve().parent / "cuda"
DEFAULT_BUILD_DIR = Path(__file__).resolve().parents[1] / "build" / "kernels"
THREADS = 128  # threads per block: one (point, level) each


@functools.lru_cache(maxsize=None)
def load_module(name: str, device_index: int, build_dir: Path = DEFAULT_BUILD_DIR) -> cupy.RawModule:
    """The compiled module of ``kernels/cuda/<name>.cu`` on one device (cached)."""
    fatbin = build_dir / f"{name}.fatbin"
    source = CUDA_SOURCE_DIR / f"{name}.cu"
    with cupy.cuda.Device(device_index):
        if fatbin.is_file():
            logger.info("CUDA kernels %s: loading %s", name, fatbin)
            module = cupy.RawModule(path=str(fatbin))
        else:
            logger.info(
                "CUDA kernels %s: %s not built (cmake -S . -B build && cmake --build build); "
                "compiling %s with NVRTC", name, fatbin, source,
            )
            module = cupy.RawModule(code=source.read_text(), options=("-std=c++17",))
    return module


def _launch(kernel: str, device: torch.device, grid: tuple[int, int], args: tuple) -> None:
    index = device.index if device.index is not None else torch.cuda.current_device()
    function = load_module("hashgrid", index).get_function(kernel)
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(index), cupy.cuda.ExternalStream(stream.cuda_stream, index):
        function(grid, (THREADS,), args)


def _grid(n_points: int, n_levels: int) -> tuple[int, int]:
    return ((n_points + THREADS - 1) // THREADS, n_levels)


def hashgrid_fwd_cuda(
    x: Tensor,  # [N, 3] fp32 contiguous, CUDA
    table: Tensor,  # [R, F] fp32 contiguous
    levels: Tensor,  # [4, L] int32
) -> Tensor:  # [N, L * F]
    n, n_levels, f = x.shape[0], levels.shape[1], table.shape[1]
    out = torch.empty(n, n_levels * f, device=x.device, dtype=torch.float32)
    if n:
        args = (x.data_ptr(), table.data_ptr(), levels.data_ptr(), out.data_ptr(),
                np.int32(n), np.int32(n_levels), np.int32(f))
        _launch("hashgrid_fwd", x.device, _grid(n, n_levels), args)
    return out


def hashgrid_bwd_cuda(
    x: Tensor,  # [N, 3] fp32 contiguous, CUDA
    table: Tensor,  # [R, F] fp32 contiguous
    levels: Tensor,  # [4, L] int32
    grad_out: Tensor,  # [N, L * F] fp32 contiguous
    need_dx: bool,
) -> tuple[Tensor, Tensor | None]:  # grad_table [R, F], grad_x [N, 3] or None
    n, n_levels, f = x.shape[0], levels.shape[1], table.shape[1]
    grad_table = torch.zeros_like(table)
    grad_x = torch.zeros_like(x) if need_dx else None
    if n:
        args = (x.data_ptr(), table.data_ptr(), levels.data_ptr(), grad_out.data_ptr(),
                grad_table.data_ptr(), grad_x.data_ptr() if need_dx else None,
                np.int32(n), np.int32(n_levels), np.int32(f), np.int32(need_dx))
        _launch("hashgrid_bwd", x.device, _grid(n, n_levels), args)
    return grad_table, grad_x
