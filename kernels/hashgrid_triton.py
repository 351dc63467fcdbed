"""Triton kernels for the hash-grid encoding: forward, and backward to table and positions.

One program handles BLOCK points of one level (grid = (ceil(N / BLOCK), L)), so the
threads of a program read the same level's table. Indexing follows
``kernels.hashgrid_config`` exactly; ``kernels.hashgrid_ref`` is the oracle the tests
compare against. Under ``TRITON_INTERPRET=1`` these run on CPU (slowly) for testing.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 128


@triton.jit
def _cell(x_ptr, offs, axis: tl.constexpr, mask, resf):
    """Clamped coordinate -> (lower vertex, fraction in the cell, inside-cube flag)."""
    x = tl.load(x_ptr + offs * 3 + axis, mask=mask, other=0.0)
    inside = (x >= 0.0) & (x <= 1.0)  # clamp passes the gradient only inside (as torch)
    pos = tl.minimum(tl.maximum(x, 0.0), 1.0) * resf
    # Capped at res - 1 so that x == 1 interpolates inside the last cell.
    cell = tl.minimum(tl.floor(pos), resf - 1.0)
    return cell.to(tl.int32), pos - cell, inside


@triton.jit
def _vertex_row(ix, iy, iz, res, rows, dense):
    """Row of vertex (ix, iy, iz) within its level: dense stride or instant-NGP hash."""
    side = res + 1
    dense_row = ix + side * (iy + side * iz)
    # uint32 products wrap mod 2**32 as the hash requires (the literals are uint32).
    h = ix.to(tl.uint32) ^ (iy.to(tl.uint32) * 2654435761) ^ (iz.to(tl.uint32) * 805459861)
    hashed_row = (h & (rows - 1).to(tl.uint32)).to(tl.int32)  # hashed levels: rows = 2**T
    return tl.where(dense != 0, dense_row, hashed_row)


@triton.jit
def _level_params(levels_ptr, level, n_levels):
    res = tl.load(levels_ptr + level)
    base = tl.load(levels_ptr + n_levels + level)
    rows = tl.load(levels_ptr + 2 * n_levels + level)
    dense = tl.load(levels_ptr + 3 * n_levels + level)
    return res, base, rows, dense


@triton.jit
def _hashgrid_fwd_kernel(
    x_ptr,  # [N, 3] fp32
    table_ptr,  # [R, F] fp32
    levels_ptr,  # [4, L] int32: resolution, first row, rows, dense flag
    out_ptr,  # [N, L * F] fp32
    n_points,
    n_levels,
    F: tl.constexpr,
    BLOCK: tl.constexpr,
):
    level = tl.program_id(1)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_points
    res, base, rows, dense = _level_params(levels_ptr, level, n_levels)
    resf = res.to(tl.float32)
    ix, fx, _ = _cell(x_ptr, offs, 0, mask, resf)
    iy, fy, _ = _cell(x_ptr, offs, 1, mask, resf)
    iz, fz, _ = _cell(x_ptr, offs, 2, mask, resf)
    feat = tl.arange(0, F)
    acc = tl.zeros((BLOCK, F), dtype=tl.float32)
    for corner in tl.static_range(8):
        bx = corner & 1
        by = (corner >> 1) & 1
        bz = (corner >> 2) & 1
        w = (bx * fx + (1 - bx) * (1.0 - fx)) * (by * fy + (1 - by) * (1.0 - fy))
        w = w * (bz * fz + (1 - bz) * (1.0 - fz))
        row = base + _vertex_row(ix + bx, iy + by, iz + bz, res, rows, dense)
        vals = tl.load(table_ptr + row[:, None] * F + feat[None, :], mask=mask[:, None], other=0.0)
        acc += w[:, None] * vals
    out_offs = offs[:, None] * (n_levels * F) + level * F + feat[None, :]
    tl.store(out_ptr + out_offs, acc, mask=mask[:, None])


@triton.jit
def _hashgrid_bwd_kernel(
    x_ptr,  # [N, 3] fp32
    table_ptr,  # [R, F] fp32 (read only when NEED_DX)
    levels_ptr,  # [4, L] int32
    grad_out_ptr,  # [N, L * F] fp32
    grad_table_ptr,  # [R, F] fp32, accumulated with atomics
    grad_x_ptr,  # [N, 3] fp32, accumulated with atomics across levels (when NEED_DX)
    n_points,
    n_levels,
    F: tl.constexpr,
    BLOCK: tl.constexpr,
    NEED_DX: tl.constexpr,
):
    level = tl.program_id(1)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_points
    res, base, rows, dense = _level_params(levels_ptr, level, n_levels)
    resf = res.to(tl.float32)
    ix, fx, in_x = _cell(x_ptr, offs, 0, mask, resf)
    iy, fy, in_y = _cell(x_ptr, offs, 1, mask, resf)
    iz, fz, in_z = _cell(x_ptr, offs, 2, mask, resf)
    feat = tl.arange(0, F)
    g_offs = offs[:, None] * (n_levels * F) + level * F + feat[None, :]
    g = tl.load(grad_out_ptr + g_offs, mask=mask[:, None], other=0.0)  # [BLOCK, F]
    gx = tl.zeros((BLOCK,), dtype=tl.float32)
    gy = tl.zeros((BLOCK,), dtype=tl.float32)
    gz = tl.zeros((BLOCK,), dtype=tl.float32)
    for corner in tl.static_range(8):
        bx = corner & 1
        by = (corner >> 1) & 1
        bz = (corner >> 2) & 1
        wx = bx * fx + (1 - bx) * (1.0 - fx)
        wy = by * fy + (1 - by) * (1.0 - fy)
        wz = bz * fz + (1 - bz) * (1.0 - fz)
        row = base + _vertex_row(ix + bx, iy + by, iz + bz, res, rows, dense)
        addr = row[:, None] * F + feat[None, :]
        tl.atomic_add(grad_table_ptr + addr, (wx * wy * wz)[:, None] * g, mask=mask[:, None])
        if NEED_DX:
            vals = tl.load(table_ptr + addr, mask=mask[:, None], other=0.0)
            dot = tl.sum(vals * g, axis=1)  # dL/dw for this corner
            # dw/dfrac on one axis is +1 for the upper vertex, -1 for the lower one.
            gx += dot * (2 * bx - 1) * wy * wz
            gy += dot * (2 * by - 1) * wx * wz
            gz += dot * (2 * bz - 1) * wx * wy
    if NEED_DX:
        tl.atomic_add(grad_x_ptr + offs * 3 + 0, tl.where(in_x, gx * resf, 0.0), mask=mask)
        tl.atomic_add(grad_x_ptr + offs * 3 + 1, tl.where(in_y, gy * resf, 0.0), mask=mask)
        tl.atomic_add(grad_x_ptr + offs * 3 + 2, tl.where(in_z, gz * resf, 0.0), mask=mask)


def hashgrid_fwd_triton(
    x: Tensor,  # [N, 3] fp32 contiguous
    table: Tensor,  # [R, F] fp32 contiguous
    levels: Tensor,  # [4, L] int32
) -> Tensor:  # [N, L * F]
    n, n_levels, f = x.shape[0], levels.shape[1], table.shape[1]
    out = torch.empty(n, n_levels * f, device=x.device, dtype=torch.float32)
    if n == 0:
        return out
    grid = (triton.cdiv(n, BLOCK), n_levels)
    _hashgrid_fwd_kernel[grid](x, table, levels, out, n, n_levels, F=f, BLOCK=BLOCK)
    return out


def hashgrid_bwd_triton(
    x: Tensor,  # [N, 3] fp32 contiguous
    table: Tensor,  # [R, F] fp32 contiguous
    levels: Tensor,  # [4, L] int32
    grad_out: Tensor,  # [N, L * F] fp32 contiguous
    need_dx: bool,
) -> tuple[Tensor, Tensor | None]:  # grad_table [R, F], grad_x [N, 3] or None
    n, n_levels, f = x.shape[0], levels.shape[1], table.shape[1]
    grad_table = torch.zeros_like(table)
    # Without NEED_DX the kernel never touches grad_x; any fp32 pointer will do.
    grad_x = torch.zeros_like(x) if need_dx else grad_table
    if n == 0:
        return grad_table, (grad_x if need_dx else None)
    grid = (triton.cdiv(n, BLOCK), n_levels)
    _hashgrid_bwd_kernel[grid](
        x, table, levels, grad_out, grad_table, grad_x, n, n_levels,
        F=f, BLOCK=BLOCK, NEED_DX=need_dx,
    )
    return grad_table, (grad_x if need_dx else None)
