"""3D Gaussian Splatting fit to the orbit views, and rendering of in-between views.

A compact take on Kerbl et al. 2023 with the rasterizer of kernels.gaussians:
- init: points drawn uniformly in a ball inside the unit sphere, kept where every view's
  foreground mask covers them (the visual hull), colored by the mean of their projections,
  sized by the distance to their 3 nearest neighbours;
- Adam, one learning rate per parameter kind, means' rate decayed x0.01 over the fit;
- loss: (1 - w) L1 + w (1 - SSIM) on RGB over white, plus an L1 between the rendered
  alpha and the foreground mask (white background);
- densification every few hundred steps: the Gaussians with the largest accumulated
  positional gradient grow (the large ones split in two, the small ones are cloned);
  transparent Gaussians and those leaving the unit sphere are pruned. The optimizer is
  rebuilt after each densification (its moments restart), which short fits tolerate.
Colors are view-independent RGB (SH degree 0), matching diffuse, evenly lit views.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import Tensor

from hi3d.engine.cameras import Cameras
from hi3d.engine.errors import InvalidInput
from hi3d.engine.files import atomic_write
from hi3d.engine.recon.config import GaussianFitConfig
from hi3d.kernels.gaussians import rasterize
from hi3d.kernels.gaussians_ref import SH_C0, quat_to_rotmat

Progress = Callable[[str, int, int, float], None]
DENSIFY_FRACTION = 0.25  # share of Gaussians (those with gradient) that grow per densification


@dataclass
class Gaussians:
    means: Tensor  # [N, 3]
    log_scales: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] wxyz, unnormalised
    opacity_logits: Tensor  # [N]
    color_logits: Tensor  # [N, 3]

    def tensors(self) -> list[Tensor]:
        return [self.means, self.log_scales, self.quats, self.opacity_logits, self.color_logits]

    def __len__(self) -> int:
        return self.means.shape[0]


def render(g: Gaussians, cameras: Cameras, index: int, impl: str = "auto") -> tuple[Tensor, Tensor]:
    """RGB over white [H, W, 3] and alpha [H, W] of camera `index`."""
    dev = g.means.device
    rgb, alpha, _ = rasterize(
        g.means, g.quats, torch.exp(g.log_scales), torch.sigmoid(g.opacity_logits), torch.sigmoid(g.color_logits),
        cameras.viewmats[index].to(dev), cameras.K.to(dev), cameras.size, cameras.size,
        torch.ones(3, device=dev), impl=impl,
    )
    return rgb, alpha[..., 0]


@torch.no_grad()
def render_views(g: Gaussians, cameras: Cameras, impl: str = "auto") -> tuple[Tensor, Tensor]:
    """All views: RGB [N, H, W, 3] and alpha [N, H, W]."""
    out = [render(g, cameras, i, impl) for i in range(len(cameras))]
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])


def init_gaussians(
    images: Tensor, masks: Tensor, cameras: Cameras, cfg: GaussianFitConfig, generator: torch.Generator
) -> Gaussians:
    dev = images.device
    n = cfg.num_init * 8  # candidates: the hull keeps a fraction of the ball
    x = torch.randn(n, 3, generator=generator)
    x = x / x.norm(dim=-1, keepdim=True) * torch.rand(n, 1, generator=generator) ** (1 / 3) * cfg.init_radius
    x = x.to(dev)
    inside = torch.ones(n, dtype=torch.bool, device=dev)
    color_sum = torch.zeros(n, 3, device=dev)
    for i in range(len(cameras)):
        uv = cameras.project(x, i)[0]
        px = uv.long().clamp(0, cameras.size - 1)
        in_image = ((uv >= 0) & (uv < cameras.size)).all(-1)
        inside &= in_image & (masks[i, px[:, 1], px[:, 0]] > 0.5)
        color_sum += images[i, px[:, 1], px[:, 0]]
    if int(inside.sum()) < 4:
        raise InvalidInput("the views' foreground masks do not agree on any point of the unit sphere: "
                         "check the elevation and that the object is centred on a white background")
    x, rgb = x[inside][: cfg.num_init], (color_sum[inside] / len(cameras))[: cfg.num_init]
    k = min(4, len(x))
    dist = cKDTree(x.cpu().numpy()).query(x.cpu().numpy(), k=k)[0][:, 1:].mean(1)
    scale = torch.as_tensor(np.maximum(dist, 1e-3), dtype=torch.float32, device=dev)
    return Gaussians(
        means=x.contiguous(),
        log_scales=torch.log(scale)[:, None].repeat(1, 3),
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0], device=dev).repeat(len(x), 1),
        opacity_logits=torch.full((len(x),), float(np.log(0.1 / 0.9)), device=dev),
        color_logits=torch.logit(rgb.clamp(0.02, 0.98)),
    )


def fit_gaussians(
    images: Tensor,  # [V, H, W, 3] in [0, 1], white background
    masks: Tensor,  # [V, H, W] in [0, 1], 1 = object
    cameras: Cameras,
    cfg: GaussianFitConfig,
    impl: str = "auto",
    seed: int = 0,
    progress: Progress | None = None,
) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    g = init_gaussians(images, masks, cameras, cfg, gen)
    opt = _optimizer(g, cfg)
    grad_sum = torch.zeros(len(g), device=images.device)
    grad_count = torch.zeros(len(g), device=images.device)
    for it in range(cfg.steps):
        for group in opt.param_groups[:1]:  # means: exponential decay to 1% of the rate
            group["lr"] = cfg.lr_means * 0.01 ** (it / max(cfg.steps - 1, 1))
        views = torch.randint(0, len(cameras), (cfg.views_per_step,), generator=gen).tolist()
        loss = 0.0
        for v in views:
            rgb, alpha = render(g, cameras, v, impl)
            l1 = (rgb - images[v]).abs().mean()
            ssim = _ssim(rgb, images[v])
            loss = loss + (1 - cfg.ssim_weight) * l1 + cfg.ssim_weight * (1 - ssim)
            loss = loss + cfg.alpha_weight * (alpha - masks[v]).abs().mean()
        loss = loss / len(views)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad = g.means.grad.norm(dim=-1)
        grad_sum += grad
        grad_count += (grad > 0).float()
        opt.step()
        if cfg.densify_from <= it + 1 <= cfg.densify_until and (it + 1) % cfg.densify_every == 0:
            g = _densify_and_prune(g, grad_sum / grad_count.clamp(min=1), cfg, gen)
            opt = _optimizer(g, cfg)
            grad_sum = torch.zeros(len(g), device=images.device)
            grad_count = torch.zeros(len(g), device=images.device)
        if progress is not None:
            progress("gaussians", it + 1, cfg.steps, float(loss.detach()))
    return _detached(g)


def _optimizer(g: Gaussians, cfg: GaussianFitConfig) -> torch.optim.Adam:
    for t in g.tensors():
        t.requires_grad_(True)
    lrs = [cfg.lr_means, cfg.lr_scales, cfg.lr_quats, cfg.lr_opacities, cfg.lr_colors]
    return torch.optim.Adam([{"params": [t], "lr": lr} for t, lr in zip(g.tensors(), lrs)], eps=1e-15)


@torch.no_grad()
def _densify_and_prune(g: Gaussians, grad: Tensor, cfg: GaussianFitConfig, gen: torch.Generator) -> Gaussians:
    g = _detached(g)
    n_grow = min(int(DENSIFY_FRACTION * int((grad > 0).sum())), cfg.max_gaussians - len(g))
    grow = torch.zeros(len(g), dtype=torch.bool, device=g.means.device)
    if n_grow > 0:
        grow[torch.topk(grad, n_grow).indices] = True
    big = torch.exp(g.log_scales).max(-1).values > cfg.split_scale
    split, clone = grow & big, grow & ~big
    # Split: two children drawn from the parent's Gaussian, each 1.6x smaller.
    idx = split.nonzero()[:, 0].repeat(2)
    R = quat_to_rotmat(g.quats[idx])
    offset = (R @ (torch.randn(len(idx), 3, generator=gen).to(R) * torch.exp(g.log_scales[idx]))[..., None])[..., 0]
    children = Gaussians(
        g.means[idx] + offset, g.log_scales[idx] - np.log(1.6), g.quats[idx], g.opacity_logits[idx], g.color_logits[idx]
    )
    keep = ~split & (torch.sigmoid(g.opacity_logits) > cfg.prune_opacity) & (g.means.norm(dim=-1) < 1.0)
    parts = [_select(g, keep), _select(g, clone), children]
    return Gaussians(*[torch.cat(ts) for ts in zip(*[p.tensors() for p in parts])])


def _select(g: Gaussians, mask: Tensor) -> Gaussians:
    return Gaussians(*[t[mask] for t in g.tensors()])


def _detached(g: Gaussians) -> Gaussians:
    return Gaussians(*[t.detach().clone() for t in g.tensors()])


def _ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:  # [H, W, 3] each
    coords = torch.arange(window, dtype=a.dtype, device=a.device) - window // 2
    g1 = torch.exp(-(coords**2) / (2 * sigma**2))
    g1 = g1 / g1.sum()
    kernel = (g1[:, None] * g1[None, :]).expand(3, 1, window, window)
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, padding=window // 2, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean()


def save_gaussians_ply(g: Gaussians, path: str | os.PathLike) -> None:
    """The standard 3DGS .ply layout (as read by the reference viewers): SH degree 0."""
    n = len(g)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    rgb = torch.sigmoid(g.color_logits)
    quats = g.quats / g.quats.norm(dim=-1, keepdim=True)
    cols = [g.means, torch.zeros(n, 3), (rgb - 0.5) / SH_C0, g.opacity_logits[:, None], g.log_scales, quats]
    data = torch.cat([c.detach().cpu().float() for c in cols], 1).numpy().astype("<f4")
    header = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % n
    header += "".join(f"property float {name}\n" for name in names) + "end_header\n"
    atomic_write(path, header.encode() + data.tobytes())
