"""3D Gaussian splatting rasterizer: the public ``rasterize`` and its implementations.

``impl`` picks one of:

- ``"triton"``: our Triton kernels and their launcher (``kernels.gaussians_triton``:
  projection and tile compositing with hand-written backward passes); CUDA, or CPU under
  ``TRITON_INTERPRET=1`` (slow: tests only). No gradients flow to ``viewmat``/``K``.
- ``"torch"``: ``kernels.gaussians_ref`` (any device; torch autograd gives the gradients);
- ``"gsplat"``: gsplat's CUDA ``rasterization`` (CUDA tensors and a working gsplat build);
- ``"auto"``: ``"triton"`` for CUDA tensors, ``"torch"`` otherwise.

Conventions (camera, culling, compositing rules) are documented in ``kernels.gaussians_ref``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hi3d.kernels import gaussians_ref as ref

__all__ = ["rasterize", "IMPLS"]

IMPLS = ("auto", "triton", "torch", "gsplat")


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
    from hi3d.kernels.gaussians_triton import rasterize_triton  # imports triton: only on this path

    return rasterize_triton(*args)


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
