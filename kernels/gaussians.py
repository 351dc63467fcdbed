"""3D Gaussian splatting rasterizer: the public ``rasterize`` and its implementations.

``impl`` picks one of:

- ``"triton"``: our Triton kernels (``kernels.gaussians_triton``: projection and tile
  compositing with hand-written backward passes); CUDA, or CPU under ``TRITON_INTERPRET=1``
  (slow: tests only). Tile binning (intersections, one radix sort by tile then depth) is
  torch; SH evaluation and the final background/depth normalisation are torch autograd.
  No gradients flow to ``viewmat``/``K`` on this path.
- ``"torch"``: ``kernels.gaussians_ref`` (any device; torch autograd gives the gradients);
- ``"gsplat"``: gsplat's CUDA ``rasterization`` (CUDA tensors and a working gsplat build);
- ``"auto"``: ``"triton"`` for CUDA tensors, ``"torch"`` otherwise.

Conventions (camera, culling, compositing rules) are documented in ``kernels.gaussians_ref``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hi3d.kernels import gaussians_ref as ref

__all__ = ["rasterize", "IMPLS", "bin_tiles"]

IMPLS = ("auto", "triton", "torch", "gsplat")
PROJECT_BLOCK = 128
RASTER_BATCH = 16
RASTER_WARPS = 8


def _check(name: str, t: object, shape: tuple, device: torch.device | None) -> Tensor:
    """``shape`` uses -1 for any size; returns the tensor."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != len(shape) or any(s != -1 and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s == -1 else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(t.shape)}")
    if t.dtype != torch.float32:
        raise TypeError(f"{name} must be float32, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device} but means is on {device}")
    return t


def check_inputs(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmat: Tensor, K: Tensor, width: int, height: int, background: Tensor | None,
) -> None:
    _check("means", means, (-1, 3), None)
    n, dev = means.shape[0], means.device
    _check("quats", quats, (n, 4), dev)
    _check("scales", scales, (n, 3), dev)
    _check("opacities", opacities, (n,), dev)
    if isinstance(colors, Tensor) and colors.dim() == 3:
        _check("colors", colors, (n, -1, 3), dev)
        if colors.shape[1] not in (1, 4, 9, 16):
            raise ValueError(
                f"colors as SH coefficients must have K = (deg + 1)^2 in (1, 4, 9, 16) "
                f"(degree <= 3), got K = {colors.shape[1]}"
            )
    else:
        _check("colors", colors, (n, 3), dev)
    _check("viewmat", viewmat, (4, 4), dev)
    _check("K", K, (3, 3), dev)
    if background is not None:
        _check("background", background, (3,), dev)
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not bool(torch.isfinite(K).all()) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be finite with positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")


def rasterize(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4] wxyz (need not be normalised)
    scales: Tensor,  # [N, 3] linear, positive
    opacities: Tensor,  # [N] in [0, 1]
    colors: Tensor,  # [N, 3] RGB or [N, K, 3] SH coefficients, K = (deg + 1)^2, deg <= 3
    viewmat: Tensor,  # [4, 4] world-to-camera, OpenCV axes (x right, y down, z forward)
    K: Tensor,  # [3, 3] intrinsics (fx, fy, cx, cy used)
    width: int,
    height: int,
    background: Tensor | None = None,  # [3]
    impl: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:  # rgb [H, W, 3], alpha [H, W, 1], depth [H, W, 1]
    """Render Gaussians to an image; differentiable w.r.t. all Gaussian parameters.

    ``depth`` is the expected depth (alpha-weighted camera z divided by alpha; 0 where
    nothing was hit). SH colors are evaluated in the direction camera -> mean with 3DGS'
    +0.5 offset and clamped at 0; RGB colors are used as given.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    check_inputs(means, quats, scales, opacities, colors, viewmat, K, width, height, background)
    if impl == "auto":
        impl = "triton" if means.is_cuda else "torch"
    args = (means, quats, scales, opacities, colors, viewmat, K, width, height, background)
    if impl == "torch":
        return ref.rasterize_ref(*args)
    if impl == "gsplat":
        return _rasterize_gsplat(*args)
    return _rasterize_triton(*args)


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


def _rasterize_triton(means, quats, scales, opacities, colors, viewmat, K, width, height, background):
    means2d, conics, depths, radii = _Project.apply(
        means.contiguous(), quats.contiguous(), scales.contiguous(),
        viewmat.detach().contiguous(), K.detach().contiguous(), width, height,
    )
    feats = torch.cat([ref.colors_to_rgb(colors, means, viewmat), depths[:, None]], -1)
    offsets, ids = bin_tiles(means2d, radii, depths, width, height)
    img, T = _Composite.apply(means2d, conics, opacities.contiguous(), feats.contiguous(), offsets, ids, width, height)
    return ref.finish(img, T, background)


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, viewmat, K, width, height):
        from hi3d.kernels.gaussians_triton import project_fwd_kernel

        n = means.shape[0]
        means2d = means.new_empty(n, 2)
        conics = means.new_empty(n, 3)
        depths = means.new_empty(n)
        radii = torch.empty(n, 2, dtype=torch.int32, device=means.device)
        grid = (-(-n // PROJECT_BLOCK),)
        project_fwd_kernel[grid](means, quats, scales, viewmat, K, means2d, conics, depths, radii,
                                 n, width, height, BLOCK=PROJECT_BLOCK)
        ctx.save_for_backward(means, quats, scales, viewmat, K, radii)
        ctx.size = (width, height)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii):
        from hi3d.kernels.gaussians_triton import project_bwd_kernel

        means, quats, scales, viewmat, K, radii = ctx.saved_tensors
        n = means.shape[0]
        v_means, v_quats, v_scales = torch.zeros_like(means), torch.zeros_like(quats), torch.zeros_like(scales)
        grid = (-(-n // PROJECT_BLOCK),)
        project_bwd_kernel[grid](
            means, quats, scales, viewmat, K, radii,
            _dense(v_means2d, (n, 2), means), _dense(v_conics, (n, 3), means), _dense(v_depths, (n,), means),
            v_means, v_quats, v_scales, n, *ctx.size, BLOCK=PROJECT_BLOCK,
        )
        return v_means, v_quats, v_scales, None, None, None, None


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, feats, offsets, ids, width, height):
        from hi3d.kernels.gaussians_triton import raster_fwd_kernel

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
        from hi3d.kernels.gaussians_triton import raster_bwd_kernel

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


def _rasterize_gsplat(means, quats, scales, opacities, colors, viewmat, K, width, height, background):
    if not means.is_cuda:
        raise ValueError("impl='gsplat' needs CUDA tensors (gsplat's rasterizer is CUDA-only)")
    from gsplat import rasterization

    sh_degree = None if colors.dim() == 2 else int(round(colors.shape[1] ** 0.5)) - 1
    renders, alphas, _ = rasterization(
        means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
        sh_degree=sh_degree, backgrounds=None if background is None else background[None],
        render_mode="RGB+ED", packed=False,
    )
    return renders[0, ..., :3], alphas[0], renders[0, ..., 3:]
