"""Triton kernels of the Gaussian rasterizer (EWA projection and tile compositing, each
with its hand-written backward) and their launcher ``rasterize_triton``, which
``kernels.gaussians.rasterize`` calls for ``impl="triton"``.

The Gaussians' rotation matrices come from ``gaussians_ref.quat_to_rotmat`` in torch: the
projection kernels take R and return its gradient, and autograd carries that back to the
quaternions. Tile binning (``bin_tiles``: intersections, one radix sort by tile then depth),
SH evaluation and the final background/depth normalisation are torch too. No gradients flow
to ``viewmat``/``K``.

Projection works on BLOCK Gaussians per program. Compositing runs one program per 16x16
tile and walks the tile's depth-sorted list BATCH Gaussians at a time: a cumulative product
over the batch gives every (Gaussian, pixel) transmittance at once, and the loop stops as
soon as every pixel of the tile has terminated. The backward pass walks the same order
front to back; what lies behind a Gaussian is the saved final colour minus what was
accumulated up to it, so no transmittance has to be divided back out of the final value.
Semantics (thresholds, clamps) are those of ``kernels.gaussians_ref``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from hi3d.kernels import gaussians_ref as ref

# @triton.jit code reads globals only as constexprs: the reference's constants, wrapped.
EPS2D = tl.constexpr(ref.EPS2D)
NEAR_PLANE = tl.constexpr(ref.NEAR_PLANE)
SIGMA_EXTENT = tl.constexpr(ref.SIGMA_EXTENT)
FRUSTUM_MARGIN = tl.constexpr(ref.FRUSTUM_MARGIN)
ALPHA_MIN = tl.constexpr(ref.ALPHA_MIN)
ALPHA_MAX = tl.constexpr(ref.ALPHA_MAX)
T_MIN = tl.constexpr(ref.T_MIN)
PROJECT_BLOCK = 128
RASTER_BATCH = 16
RASTER_WARPS = 8


@triton.jit
def _load_camera(view_ptr, k_ptr):
    r00 = tl.load(view_ptr + 0)
    r01 = tl.load(view_ptr + 1)
    r02 = tl.load(view_ptr + 2)
    t0 = tl.load(view_ptr + 3)
    r10 = tl.load(view_ptr + 4)
    r11 = tl.load(view_ptr + 5)
    r12 = tl.load(view_ptr + 6)
    t1 = tl.load(view_ptr + 7)
    r20 = tl.load(view_ptr + 8)
    r21 = tl.load(view_ptr + 9)
    r22 = tl.load(view_ptr + 10)
    t2 = tl.load(view_ptr + 11)
    fx = tl.load(k_ptr + 0)
    cx = tl.load(k_ptr + 2)
    fy = tl.load(k_ptr + 4)
    cy = tl.load(k_ptr + 5)
    return r00, r01, r02, r10, r11, r12, r20, r21, r22, t0, t1, t2, fx, fy, cx, cy


@triton.jit
def _load3(ptr, first, mask, other0, other1, other2):
    """Elements first, first + 1, first + 2 of ptr per lane (other* where masked)."""
    return (tl.load(ptr + first + 0, mask=mask, other=other0),
            tl.load(ptr + first + 1, mask=mask, other=other1),
            tl.load(ptr + first + 2, mask=mask, other=other2))


@triton.jit
def _store3(ptr, first, mask, v0, v1, v2):
    tl.store(ptr + first + 0, v0, mask=mask)
    tl.store(ptr + first + 1, v1, mask=mask)
    tl.store(ptr + first + 2, v2, mask=mask)


@triton.jit
def _sandwich(a00, a01, a02, a10, a11, a12, a20, a21, a22,
              s00, s01, s02, s11, s12, s22):
    """A S A^T for a symmetric S (upper triangle given); returns its upper triangle."""
    b00 = a00 * s00 + a01 * s01 + a02 * s02
    b01 = a00 * s01 + a01 * s11 + a02 * s12
    b02 = a00 * s02 + a01 * s12 + a02 * s22
    b10 = a10 * s00 + a11 * s01 + a12 * s02
    b11 = a10 * s01 + a11 * s11 + a12 * s12
    b12 = a10 * s02 + a11 * s12 + a12 * s22
    b20 = a20 * s00 + a21 * s01 + a22 * s02
    b21 = a20 * s01 + a21 * s11 + a22 * s12
    b22 = a20 * s02 + a21 * s12 + a22 * s22
    return (
        b00 * a00 + b01 * a01 + b02 * a02, b00 * a10 + b01 * a11 + b02 * a12,
        b00 * a20 + b01 * a21 + b02 * a22, b10 * a10 + b11 * a11 + b12 * a12,
        b10 * a20 + b11 * a21 + b12 * a22, b20 * a20 + b21 * a21 + b22 * a22,
    )


@triton.jit
def _forward_geometry(means_ptr, rots_ptr, scales_ptr, offs, mask, r00, r01, r02, r10, r11, r12,
                      r20, r21, r22, t0, t1, t2, fx, fy, cx, cy, width, height):
    """Everything the forward pass computes, for reuse by the backward pass."""
    # q: the Gaussian's rotation R (row-major); masked lanes get the identity
    q00, q01, q02 = _load3(rots_ptr, offs * 9, mask, 1.0, 0.0, 0.0)
    q10, q11, q12 = _load3(rots_ptr, offs * 9 + 3, mask, 0.0, 1.0, 0.0)
    q20, q21, q22 = _load3(rots_ptr, offs * 9 + 6, mask, 0.0, 0.0, 1.0)
    sx, sy, sz = _load3(scales_ptr, offs * 3, mask, 1.0, 1.0, 1.0)
    # Sigma = R diag(s^2) R^T
    c00 = q00 * q00 * sx * sx + q01 * q01 * sy * sy + q02 * q02 * sz * sz
    c01 = q00 * q10 * sx * sx + q01 * q11 * sy * sy + q02 * q12 * sz * sz
    c02 = q00 * q20 * sx * sx + q01 * q21 * sy * sy + q02 * q22 * sz * sz
    c11 = q10 * q10 * sx * sx + q11 * q11 * sy * sy + q12 * q12 * sz * sz
    c12 = q10 * q20 * sx * sx + q11 * q21 * sy * sy + q12 * q22 * sz * sz
    c22 = q20 * q20 * sx * sx + q21 * q21 * sy * sy + q22 * q22 * sz * sz
    w00, w01, w02, w11, w12, w22 = _sandwich(r00, r01, r02, r10, r11, r12, r20, r21, r22,
                                             c00, c01, c02, c11, c12, c22)
    mx, my, mz = _load3(means_ptr, offs * 3, mask, 0.0, 0.0, 0.0)
    x = r00 * mx + r01 * my + r02 * mz + t0
    y = r10 * mx + r11 * my + r12 * mz + t1
    z = r20 * mx + r21 * my + r22 * mz + t2
    z = tl.where(mask & (z > NEAR_PLANE), z, 1.0)  # culled anyway; keeps the maths finite
    # constexprs go right of tensors: the interpreter wraps constexpr * tensor in a constexpr
    lim_x = width * (FRUSTUM_MARGIN * 0.5) / fx
    lim_y = height * (FRUSTUM_MARGIN * 0.5) / fy
    ux = x / z
    uy = y / z
    free_x = (ux >= -(cx / fx + lim_x)) & (ux <= (width - cx) / fx + lim_x)
    free_y = (uy >= -(cy / fy + lim_y)) & (uy <= (height - cy) / fy + lim_y)
    tx = z * tl.minimum(tl.maximum(ux, -(cx / fx + lim_x)), (width - cx) / fx + lim_x)
    ty = z * tl.minimum(tl.maximum(uy, -(cy / fy + lim_y)), (height - cy) / fy + lim_y)
    j00 = fx / z
    j02 = -fx * tx / (z * z)
    j11 = fy / z
    j12 = -fy * ty / (z * z)
    # cov2d = J Sigma_c J^T with J = [[j00, 0, j02], [0, j11, j12]]
    a = j00 * (j00 * w00 + j02 * w02) + j02 * (j00 * w02 + j02 * w22) + EPS2D
    b = j11 * (j00 * w01 + j02 * w12) + j12 * (j00 * w02 + j02 * w22)
    c = j11 * (j11 * w11 + j12 * w12) + j12 * (j11 * w12 + j12 * w22) + EPS2D
    return (sx, sy, sz, q00, q01, q02, q10, q11, q12, q20, q21, q22,
            w00, w01, w02, w11, w12, w22, x, y, z, tx, ty, free_x, free_y,
            j00, j02, j11, j12, a, b, c)


@triton.jit
def project_fwd_kernel(means_ptr, rots_ptr, scales_ptr, view_ptr, k_ptr,
                       means2d_ptr, conics_ptr, depths_ptr, radii_ptr,
                       n, width, height, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    r00, r01, r02, r10, r11, r12, r20, r21, r22, t0, t1, t2, fx, fy, cx, cy = _load_camera(view_ptr, k_ptr)
    g = _forward_geometry(means_ptr, rots_ptr, scales_ptr, offs, mask, r00, r01, r02, r10, r11, r12,
                          r20, r21, r22, t0, t1, t2, fx, fy, cx, cy, width, height)
    # raw camera z (not the guarded one) decides culling and is the depth
    mx, my, mz = _load3(means_ptr, offs * 3, mask, 0.0, 0.0, 0.0)
    z_raw = r20 * mx + r21 * my + r22 * mz + t2
    (_, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _,
     x, y, z, _, _, _, _, _, _, _, _, a, b, c) = g
    det = a * c - b * b
    det_safe = tl.where(det > 0, det, 1.0)
    u = fx * x / z + cx
    v = fy * y / z + cy
    rx = tl.ceil(tl.sqrt(tl.maximum(a, 0.0)) * SIGMA_EXTENT)
    ry = tl.ceil(tl.sqrt(tl.maximum(c, 0.0)) * SIGMA_EXTENT)
    visible = ((z_raw > NEAR_PLANE) & (det > 0) & (u + rx > 0) & (u - rx < width)
               & (v + ry > 0) & (v - ry < height))
    tl.store(means2d_ptr + offs * 2 + 0, u, mask=mask)
    tl.store(means2d_ptr + offs * 2 + 1, v, mask=mask)
    tl.store(conics_ptr + offs * 3 + 0, c / det_safe, mask=mask)
    tl.store(conics_ptr + offs * 3 + 1, -b / det_safe, mask=mask)
    tl.store(conics_ptr + offs * 3 + 2, a / det_safe, mask=mask)
    tl.store(depths_ptr + offs, z_raw, mask=mask)
    tl.store(radii_ptr + offs * 2 + 0, tl.where(visible, rx, 0.0).to(tl.int32), mask=mask)
    tl.store(radii_ptr + offs * 2 + 1, tl.where(visible, ry, 0.0).to(tl.int32), mask=mask)


@triton.jit
def project_bwd_kernel(means_ptr, rots_ptr, scales_ptr, view_ptr, k_ptr, radii_ptr,
                       v_means2d_ptr, v_conics_ptr, v_depths_ptr,
                       v_means_ptr, v_rots_ptr, v_scales_ptr,
                       n, width, height, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    rad = tl.load(radii_ptr + offs * 2, mask=offs < n, other=0)
    mask = (offs < n) & (rad > 0)  # culled Gaussians get zero gradients
    r00, r01, r02, r10, r11, r12, r20, r21, r22, t0, t1, t2, fx, fy, cx, cy = _load_camera(view_ptr, k_ptr)
    (sx, sy, sz, q00, q01, q02, q10, q11, q12, q20, q21, q22,
     w00, w01, w02, w11, w12, w22, x, y, z, tx, ty, free_x, free_y,
     j00, j02, j11, j12, a, b, c) = _forward_geometry(
        means_ptr, rots_ptr, scales_ptr, offs, mask, r00, r01, r02, r10, r11, r12,
        r20, r21, r22, t0, t1, t2, fx, fy, cx, cy, width, height)
    det = a * c - b * b
    det = tl.where(mask, det, 1.0)
    pa, pb, pc = c / det, -b / det, a / det  # conic P = [[pa, pb], [pb, pc]]
    ga = tl.load(v_conics_ptr + offs * 3 + 0, mask=mask, other=0.0)
    gb = 0.5 * tl.load(v_conics_ptr + offs * 3 + 1, mask=mask, other=0.0)
    gc = tl.load(v_conics_ptr + offs * 3 + 2, mask=mask, other=0.0)
    # d conic: V = -P G P, the gradient w.r.t. the (symmetric) 2D covariance
    pg00 = pa * ga + pb * gb
    pg01 = pa * gb + pb * gc
    pg10 = pb * ga + pc * gb
    pg11 = pb * gb + pc * gc
    v00 = -(pg00 * pa + pg01 * pb)
    v01 = -(pg00 * pb + pg01 * pc)
    v11 = -(pg10 * pb + pg11 * pc)
    # cov2d = J W J^T: dW = J^T V J, dJ = 2 V J W
    vj00 = v00 * j00
    vj02 = v00 * j02 + v01 * j12
    vj10 = v01 * j00
    vj11 = v11 * j11
    vj12 = v01 * j02 + v11 * j12
    vj01 = v01 * j11
    gj00 = 2 * (vj00 * w00 + vj01 * w01 + vj02 * w02)
    gj02 = 2 * (vj00 * w02 + vj01 * w12 + vj02 * w22)
    gj11 = 2 * (vj10 * w01 + vj11 * w11 + vj12 * w12)
    gj12 = 2 * (vj10 * w02 + vj11 * w12 + vj12 * w22)
    gw00 = j00 * j00 * v00
    gw01 = j00 * j11 * v01
    gw02 = j00 * (j02 * v00 + j12 * v01)
    gw11 = j11 * j11 * v11
    gw12 = j11 * (j02 * v01 + j12 * v11)
    gw22 = j02 * j02 * v00 + 2 * j02 * j12 * v01 + j12 * j12 * v11
    # J and the projected mean as functions of the camera-space mean
    gu = tl.load(v_means2d_ptr + offs * 2 + 0, mask=mask, other=0.0)
    gv = tl.load(v_means2d_ptr + offs * 2 + 1, mask=mask, other=0.0)
    iz = 1.0 / z
    iz2 = iz * iz
    gx = fx * iz * gu + tl.where(free_x, -fx * iz2 * gj02, 0.0)
    gy = fy * iz * gv + tl.where(free_y, -fy * iz2 * gj12, 0.0)
    gz = (tl.load(v_depths_ptr + offs, mask=mask, other=0.0)
          - fx * x * iz2 * gu - fy * y * iz2 * gv
          - fx * iz2 * gj00 - fy * iz2 * gj11
          + tl.where(free_x, 2.0, 1.0) * fx * tx * iz2 * iz * gj02
          + tl.where(free_y, 2.0, 1.0) * fy * ty * iz2 * iz * gj12)
    # camera -> world: dm = Rv^T dp, dSigma = Rv^T dW Rv (the sandwich with A = Rv^T)
    _store3(v_means_ptr, offs * 3, mask,
            r00 * gx + r10 * gy + r20 * gz, r01 * gx + r11 * gy + r21 * gz, r02 * gx + r12 * gy + r22 * gz)
    gs00, gs01, gs02, gs11, gs12, gs22 = _sandwich(r00, r10, r20, r01, r11, r21, r02, r12, r22,
                                                   gw00, gw01, gw02, gw11, gw12, gw22)
    # Sigma = M M^T with M = R diag(s): dM = 2 dSigma M
    m00, m01, m02 = q00 * sx, q01 * sy, q02 * sz
    m10, m11, m12 = q10 * sx, q11 * sy, q12 * sz
    m20, m21, m22 = q20 * sx, q21 * sy, q22 * sz
    gm00 = 2 * (gs00 * m00 + gs01 * m10 + gs02 * m20)
    gm01 = 2 * (gs00 * m01 + gs01 * m11 + gs02 * m21)
    gm02 = 2 * (gs00 * m02 + gs01 * m12 + gs02 * m22)
    gm10 = 2 * (gs01 * m00 + gs11 * m10 + gs12 * m20)
    gm11 = 2 * (gs01 * m01 + gs11 * m11 + gs12 * m21)
    gm12 = 2 * (gs01 * m02 + gs11 * m12 + gs12 * m22)
    gm20 = 2 * (gs02 * m00 + gs12 * m10 + gs22 * m20)
    gm21 = 2 * (gs02 * m01 + gs12 * m11 + gs22 * m21)
    gm22 = 2 * (gs02 * m02 + gs12 * m12 + gs22 * m22)
    _store3(v_scales_ptr, offs * 3, mask, gm00 * q00 + gm10 * q10 + gm20 * q20,
            gm01 * q01 + gm11 * q11 + gm21 * q21, gm02 * q02 + gm12 * q12 + gm22 * q22)
    # dR = dM diag(s)
    _store3(v_rots_ptr, offs * 9, mask, gm00 * sx, gm01 * sy, gm02 * sz)
    _store3(v_rots_ptr, offs * 9 + 3, mask, gm10 * sx, gm11 * sy, gm12 * sz)
    _store3(v_rots_ptr, offs * 9 + 6, mask, gm20 * sx, gm21 * sy, gm22 * sz)


@triton.jit
def _tile_setup(offsets_ptr, width, height, tiles_x, TILE: tl.constexpr):
    tile = tl.program_id(0)
    pix = tl.arange(0, TILE * TILE)
    px = (tile % tiles_x) * TILE + pix % TILE
    py = (tile // tiles_x) * TILE + pix // TILE
    inside = (px < width) & (py < height)
    start = tl.load(offsets_ptr + tile)
    end = tl.load(offsets_ptr + tile + 1)
    return pix, px, py, inside, start, end


@triton.jit
def _batch_alpha(means2d_ptr, conics_ptr, opac_ptr, ids, live, pxf, pyf, done):
    """Alphas of a batch of Gaussians [B] at the tile's pixels [P] -> [B, P] tensors."""
    mx = tl.load(means2d_ptr + ids * 2 + 0, mask=live, other=0.0)
    my = tl.load(means2d_ptr + ids * 2 + 1, mask=live, other=0.0)
    ca = tl.load(conics_ptr + ids * 3 + 0, mask=live, other=0.0)
    cb = tl.load(conics_ptr + ids * 3 + 1, mask=live, other=0.0)
    cc = tl.load(conics_ptr + ids * 3 + 2, mask=live, other=0.0)
    op = tl.load(opac_ptr + ids, mask=live, other=0.0)
    dx = mx[:, None] - pxf[None, :]
    dy = my[:, None] - pyf[None, :]
    sigma = 0.5 * (ca[:, None] * dx * dx + cc[:, None] * dy * dy) + cb[:, None] * dx * dy
    g = tl.exp(-sigma)
    raw = op[:, None] * g
    alpha = tl.minimum(raw, ALPHA_MAX)
    used = (sigma >= 0) & (alpha >= ALPHA_MIN) & (done == 0)[None, :] & live[:, None]
    alpha = tl.where(used, alpha, 0.0)
    return dx, dy, sigma, g, raw, alpha, used, ca, cb, cc


@triton.jit
def _batch_transmittance(alpha, used, T):
    """Per (Gaussian, pixel): transmittance in front, whether it is composited, and
    whether the pixel terminates in this batch ("stop before T <= 1e-4")."""
    t_incl = T[None, :] * tl.cumprod(1.0 - alpha, axis=0)
    stop = used & (t_incl <= T_MIN)
    used = used & (t_incl > T_MIN)
    t_excl = t_incl / (1.0 - alpha)
    return t_incl, t_excl, used, tl.max(stop.to(tl.int32), axis=0)


@triton.jit
def raster_fwd_kernel(means2d_ptr, conics_ptr, opac_ptr, feats_ptr, offsets_ptr, ids_ptr,
                      out_feat_ptr, out_t_ptr, width, height, tiles_x,
                      C: tl.constexpr, CP: tl.constexpr, TILE: tl.constexpr, BATCH: tl.constexpr):
    pix, px, py, inside, start, end = _tile_setup(offsets_ptr, width, height, tiles_x, TILE)
    pxf = px.to(tl.float32) + 0.5
    pyf = py.to(tl.float32) + 0.5
    ch = tl.arange(0, CP)
    T = tl.full((TILE * TILE,), 1.0, tl.float32)
    done = (~inside).to(tl.int32)
    acc = tl.zeros((TILE * TILE, CP), tl.float32)
    i = start
    while (i < end) & (tl.min(done, axis=0) == 0):
        k = i + tl.arange(0, BATCH)
        live = k < end
        ids = tl.load(ids_ptr + k, mask=live, other=0)
        _, _, _, _, _, alpha, used, _, _, _ = _batch_alpha(
            means2d_ptr, conics_ptr, opac_ptr, ids, live, pxf, pyf, done)
        t_incl, t_excl, used, stop = _batch_transmittance(alpha, used, T)
        w = tl.where(used, alpha * t_excl, 0.0)
        f = tl.load(feats_ptr + ids[:, None] * C + ch[None, :], mask=live[:, None] & (ch < C)[None, :], other=0.0)
        acc += tl.sum(w[:, :, None] * f[:, None, :], axis=0)
        T = tl.min(tl.where(used, t_incl, T[None, :]), axis=0)
        done = done | stop
        i += BATCH
    pid = py * width + px
    tl.store(out_feat_ptr + pid[:, None] * C + ch[None, :], acc, mask=inside[:, None] & (ch < C)[None, :])
    tl.store(out_t_ptr + pid, T, mask=inside)


@triton.jit
def raster_bwd_kernel(means2d_ptr, conics_ptr, opac_ptr, feats_ptr, offsets_ptr, ids_ptr,
                      out_feat_ptr, out_t_ptr, g_feat_ptr, g_t_ptr,
                      v_means2d_ptr, v_conics_ptr, v_opac_ptr, v_feats_ptr,
                      width, height, tiles_x,
                      C: tl.constexpr, CP: tl.constexpr, TILE: tl.constexpr, BATCH: tl.constexpr):
    pix, px, py, inside, start, end = _tile_setup(offsets_ptr, width, height, tiles_x, TILE)
    pxf = px.to(tl.float32) + 0.5
    pyf = py.to(tl.float32) + 0.5
    ch = tl.arange(0, CP)
    pid = py * width + px
    cmask = inside[:, None] & (ch < C)[None, :]
    g_feat = tl.load(g_feat_ptr + pid[:, None] * C + ch[None, :], mask=cmask, other=0.0)  # [P, CP]
    out_feat = tl.load(out_feat_ptr + pid[:, None] * C + ch[None, :], mask=cmask, other=0.0)
    g_t = tl.load(g_t_ptr + pid, mask=inside, other=0.0)
    t_final = tl.load(out_t_ptr + pid, mask=inside, other=1.0)
    # dL/dalpha_k = T_k <gF, f_k> - (<gF, F - acc_k> + gT T_final) / (1 - alpha_k), with
    # acc_k the features composited up to and including k: only <gF, acc> is carried.
    g_total = tl.sum(g_feat * out_feat, axis=1) + g_t * t_final
    g_acc = tl.zeros((TILE * TILE,), tl.float32)
    T = tl.full((TILE * TILE,), 1.0, tl.float32)
    done = (~inside).to(tl.int32)
    i = start
    while (i < end) & (tl.min(done, axis=0) == 0):
        k = i + tl.arange(0, BATCH)
        live = k < end
        ids = tl.load(ids_ptr + k, mask=live, other=0)
        dx, dy, sigma, g, raw, alpha, used, ca, cb, cc = _batch_alpha(
            means2d_ptr, conics_ptr, opac_ptr, ids, live, pxf, pyf, done)
        t_incl, t_excl, used, stop = _batch_transmittance(alpha, used, T)
        w = tl.where(used, alpha * t_excl, 0.0)
        f = tl.load(feats_ptr + ids[:, None] * C + ch[None, :], mask=live[:, None] & (ch < C)[None, :], other=0.0)
        gf = tl.sum(f[:, None, :] * g_feat[None, :, :], axis=2)  # [B, P] = <gF_p, f_k>
        g_acc_incl = g_acc[None, :] + tl.cumsum(w * gf, axis=0)
        v_alpha = t_excl * gf - (g_total - g_acc_incl) / (1.0 - alpha)
        v_alpha = tl.where(used & (raw <= ALPHA_MAX), v_alpha, 0.0)
        v_sigma = -v_alpha * alpha
        v_op = tl.sum(v_alpha * g, axis=1)
        v_ca = tl.sum(0.5 * dx * dx * v_sigma, axis=1)
        v_cb = tl.sum(dx * dy * v_sigma, axis=1)
        v_cc = tl.sum(0.5 * dy * dy * v_sigma, axis=1)
        v_mx = tl.sum((ca[:, None] * dx + cb[:, None] * dy) * v_sigma, axis=1)
        v_my = tl.sum((cb[:, None] * dx + cc[:, None] * dy) * v_sigma, axis=1)
        v_f = tl.sum(w[:, :, None] * g_feat[None, :, :], axis=1)  # [B, CP]
        tl.atomic_add(v_opac_ptr + ids, v_op, mask=live)
        tl.atomic_add(v_conics_ptr + ids * 3 + 0, v_ca, mask=live)
        tl.atomic_add(v_conics_ptr + ids * 3 + 1, v_cb, mask=live)
        tl.atomic_add(v_conics_ptr + ids * 3 + 2, v_cc, mask=live)
        tl.atomic_add(v_means2d_ptr + ids * 2 + 0, v_mx, mask=live)
        tl.atomic_add(v_means2d_ptr + ids * 2 + 1, v_my, mask=live)
        tl.atomic_add(v_feats_ptr + ids[:, None] * C + ch[None, :], v_f, mask=live[:, None] & (ch < C)[None, :])
        g_acc = g_acc + tl.sum(w * gf, axis=0)
        T = tl.min(tl.where(used, t_incl, T[None, :]), axis=0)
        done = done | stop
        i += BATCH


def rasterize_triton(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmat: Tensor, K: Tensor, width: int, height: int, background: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``kernels.gaussians.rasterize`` with ``impl="triton"``, inputs already checked."""
    rots = ref.quat_to_rotmat(quats).reshape(-1, 9).contiguous()
    means2d, conics, depths, radii = _Project.apply(
        means.contiguous(), rots, scales.contiguous(),
        viewmat.detach().contiguous(), K.detach().contiguous(), width, height,
    )
    feats = torch.cat([ref.colors_to_rgb(colors, means, viewmat), depths[:, None]], -1)
    offsets, ids = bin_tiles(means2d, radii, depths, width, height)
    img, T = _Composite.apply(means2d, conics, opacities.contiguous(), feats.contiguous(), offsets, ids, width, height)
    return ref.finish(img, T, background)


@torch.no_grad()
def bin_tiles(
    means2d: Tensor,  # [N, 2]
    radii: Tensor,  # [N, 2] int, 0 = culled
    depths: Tensor,  # [N]
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:  # offsets [tiles + 1] int32, ids [n_isects] int32
    """Every (tile, Gaussian) overlap, sorted by tile then depth; tile t's Gaussians are
    ``ids[offsets[t]:offsets[t + 1]]``, front to back."""
    tiles_x = (width + ref.TILE - 1) // ref.TILE
    n_tiles = tiles_x * ((height + ref.TILE - 1) // ref.TILE)
    lo, hi = ref.tile_bounds(means2d, radii, width, height)
    extent = (hi - lo).long()
    counts = extent.prod(-1)
    gid = torch.repeat_interleave(torch.arange(len(counts), device=means2d.device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(gid), device=means2d.device) - first[gid]
    tx = lo[gid, 0] + local % extent[gid, 0]
    ty = lo[gid, 1] + local // extent[gid, 0]
    tile = ty * tiles_x + tx
    # Visible depths are > 0, where float32 bit patterns sort like the floats.
    depth_bits = depths.contiguous().view(torch.int32)[gid].long()
    key, order = torch.sort((tile << 32) | depth_bits)
    ids = gid[order].int()
    offsets = torch.searchsorted(key >> 32, torch.arange(n_tiles + 1, device=means2d.device)).int()
    return offsets, ids


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, rots, scales, viewmat, K, width, height):
        n = means.shape[0]
        means2d = means.new_empty(n, 2)
        conics = means.new_empty(n, 3)
        depths = means.new_empty(n)
        radii = torch.empty(n, 2, dtype=torch.int32, device=means.device)
        grid = (-(-n // PROJECT_BLOCK),)
        project_fwd_kernel[grid](means, rots, scales, viewmat, K, means2d, conics, depths, radii,
                                 n, width, height, BLOCK=PROJECT_BLOCK)
        ctx.save_for_backward(means, rots, scales, viewmat, K, radii)
        ctx.size = (width, height)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii):
        means, rots, scales, viewmat, K, radii = ctx.saved_tensors
        n = means.shape[0]
        v_means, v_rots, v_scales = torch.zeros_like(means), torch.zeros_like(rots), torch.zeros_like(scales)
        grid = (-(-n // PROJECT_BLOCK),)
        project_bwd_kernel[grid](
            means, rots, scales, viewmat, K, radii,
            _dense(v_means2d, (n, 2), means), _dense(v_conics, (n, 3), means), _dense(v_depths, (n,), means),
            v_means, v_rots, v_scales, n, *ctx.size, BLOCK=PROJECT_BLOCK,
        )
        return v_means, v_rots, v_scales, None, None, None, None


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, feats, offsets, ids, width, height):
        c = feats.shape[1]
        img = means2d.new_empty(height, width, c)
        T = means2d.new_empty(height, width)
        tiles_x = (width + ref.TILE - 1) // ref.TILE
        raster_fwd_kernel[(len(offsets) - 1,)](
            means2d, conics, opacities, feats, offsets, ids, img, T, width, height, tiles_x,
            C=c, CP=_next_pow2(c), TILE=ref.TILE, BATCH=RASTER_BATCH, num_warps=RASTER_WARPS,
        )
        ctx.save_for_backward(means2d, conics, opacities, feats, offsets, ids, img, T)
        ctx.size = (width, height, tiles_x)
        return img, T

    @staticmethod
    def backward(ctx, v_img, v_T):
        means2d, conics, opacities, feats, offsets, ids, img, T = ctx.saved_tensors
        v_means2d, v_conics = torch.zeros_like(means2d), torch.zeros_like(conics)
        v_opac, v_feats = torch.zeros_like(opacities), torch.zeros_like(feats)
        c = feats.shape[1]
        raster_bwd_kernel[(len(offsets) - 1,)](
            means2d, conics, opacities, feats, offsets, ids, img, T,
            _dense(v_img, img.shape, img), _dense(v_T, T.shape, T),
            v_means2d, v_conics, v_opac, v_feats, *ctx.size,
            C=c, CP=_next_pow2(c), TILE=ref.TILE, BATCH=RASTER_BATCH, num_warps=RASTER_WARPS,
        )
        return v_means2d, v_conics, v_opac, v_feats, None, None, None, None


def _next_pow2(c: int) -> int:
    return 1 << (c - 1).bit_length()


def _dense(grad: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Autograd passes None for outputs that got no gradient; kernels want zeros."""
    if grad is None:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return grad.contiguous()
