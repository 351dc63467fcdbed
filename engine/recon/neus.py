"""Hash-grid NeuS: an SDF + color field fit to posed views, rendered by volume rendering.

The field (instant-nsr-pl's layout, made small): position -> hash-grid encoding ++ xyz ->
MLP -> (SDF residual, geometry features); (xyz, features) -> MLP -> RGB. Color does not
depend on the view direction: Hi3D's views are of diffuse objects, and a view-independent
field is what the mesh's vertex colors store anyway.

Rendering follows NeuS (Wang et al. 2021, eq. 13): stratified points on each ray's chord
of the unit sphere, section opacity alpha_i = max((Phi(s f_i) - Phi(s f_{i+1})) / Phi(s f_i), 0)
with Phi the sigmoid and s = exp(10 * variance) learnt, composited over white. The SDF
gradient for the eikonal term comes from central finite differences (as in Neuralangelo),
which works with every hash-grid implementation, fused kernels included.

Thin parts (a table's top, a fin a few percent of the object thick) are where a NeuS started
from a sphere tears: rays see a slab at grazing angles, a hole in it hardly changes any
pixel, and the fine hash-grid levels carve ray-aligned tunnels through it. Two options, off
in the presets (measured: they close the holes but lower IoU; docs/reconstruction.md#thin-parts):
- the SDF is first fitted to the signed distance of the masks' visual hull
  (engine.recon.hull), a closed superset of the object in which every thin part is solid;
- a curvature term, mean |Laplacian of the SDF| at surface points drawn by rendering weight
  (Neuralangelo), penalises the rims a hole through a flat part makes.
Also optional: coarse-to-fine hash-grid levels (Neuralangelo) and a free-space term that keeps points outside the hull outside.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hi3d.engine.cameras import Cameras
from hi3d.engine.recon.config import NeuSConfig
from hi3d.kernels.hashgrid import HashGrid, HashGridConfig

Progress = Callable[[str, int, int, float], None]
BOUND = 1.0  # the field lives in the unit sphere; the hash grid spans its cube [-1, 1]^3


class NeuSField(nn.Module):
    def __init__(self, cfg: NeuSConfig, impl: str = "auto") -> None:
        super().__init__()
        self.cfg = cfg
        grid_cfg = HashGridConfig(
            n_levels=cfg.n_levels,
            n_features_per_level=cfg.n_features_per_level,
            log2_hashmap_size=cfg.log2_hashmap_size,
            base_resolution=cfg.base_resolution,
            max_resolution=cfg.max_resolution,
        )
        self.grid = HashGrid(grid_cfg, impl=impl)
        self.sdf_net = nn.Sequential(
            nn.Linear(3 + self.grid.out_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1 + cfg.geo_features)
        )
        self.color_net = nn.Sequential(
            nn.Linear(3 + cfg.geo_features, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 3)
        )
        # Geometric init: the SDF starts as the sphere |x| - init_radius, the MLP as a tiny residual.
        nn.init.normal_(self.sdf_net[-1].weight, std=1e-3)
        nn.init.zeros_(self.sdf_net[-1].bias)
        self.variance = nn.Parameter(torch.tensor(cfg.init_variance))
        # Coarse-to-fine (Neuralangelo): the encoding's finer levels are multiplied by 0 until
        # the schedule of set_levels enables them; None (every level on, no multiply in the hot
        # path) outside of training and whenever coarse-to-fine is off.
        self.level_weights: Tensor | None = None

    def set_levels(self, active: int) -> None:
        """Use only the `active` coarsest hash-grid levels (level-major encoding)."""
        if active >= self.cfg.n_levels:
            self.level_weights = None
            return
        device = self.variance.device
        self.level_weights = (torch.arange(self.grid.out_dim, device=device) < active * self.cfg.n_features_per_level).float()

    def sdf(self, x: Tensor) -> tuple[Tensor, Tensor]:  # x [N, 3] -> sdf [N], features [N, G]
        enc = self.grid(((x / BOUND + 1.0) * 0.5).clamp(0.0, 1.0))
        if self.level_weights is not None:
            enc = enc * self.level_weights
        h = self.sdf_net(torch.cat([x, enc], -1))
        return x.norm(dim=-1) - self.cfg.init_radius + h[:, 0], h[:, 1:]

    def color(self, x: Tensor, features: Tensor) -> Tensor:  # [N, 3], [N, G] -> [N, 3] in [0, 1]
        return torch.sigmoid(self.color_net(torch.cat([x, features], -1)))

    def sdf_gradient(self, x: Tensor, with_value: bool = False):  # x [N, 3] -> [N, 3] (, [N])
        """Central differences; with_value also gives the SDF at x as the mean of the six
        samples (second-order accurate, no extra evaluation)."""
        eps = self.cfg.fd_epsilon
        offsets = torch.eye(3, device=x.device) * eps
        pts = torch.cat([x[:, None] + offsets, x[:, None] - offsets], 1).reshape(-1, 3)
        f = self.sdf(pts)[0].reshape(-1, 2, 3)
        grad = (f[:, 0] - f[:, 1]) / (2.0 * eps)
        return (grad, f.mean((1, 2))) if with_value else grad

    def sdf_laplacian(self, x: Tensor) -> Tensor:  # x [N, 3] -> [N]
        """Second differences at cfg.curvature_epsilon: wider than a fine hash-grid cell, inside
        which the field is piecewise linear and its exact Laplacian is zero (Neuralangelo)."""
        eps = self.cfg.curvature_epsilon
        offsets = torch.eye(3, device=x.device) * eps
        pts = torch.cat([x[:, None], x[:, None] + offsets, x[:, None] - offsets], 1).reshape(-1, 3)
        f = self.sdf(pts)[0].reshape(-1, 7)
        return (f[:, 1:].sum(1) - 6.0 * f[:, 0]) / (eps * eps)

    def inv_s(self) -> Tensor:
        return torch.exp(10.0 * self.variance).clamp(1.0, 1e6)


def sphere_chord(o: Tensor, d: Tensor, radius: float = BOUND) -> tuple[Tensor, Tensor]:
    """Entry and exit distances of rays (o + t d, |d| = 1) through a sphere at the origin."""
    b = (o * d).sum(-1)
    disc = (b * b - (o * o).sum(-1) + radius * radius).clamp(min=0.0)
    root = disc.sqrt()
    near = (-b - root).clamp(min=0.0)
    return near, (-b + root).clamp(min=0.0) + 1e-6


def render_rays(
    field: NeuSField,
    o: Tensor,  # [R, 3]
    d: Tensor,  # [R, 3] unit
    samples: int,
    jitter: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # rgb [R, 3] on white, opacity [R], points [R, S+1, 3], weights [R, S]
    near, far = sphere_chord(o, d)
    steps = torch.arange(samples + 1, device=o.device, dtype=o.dtype)
    if jitter:
        steps = steps + (torch.rand(o.shape[0], 1, device=o.device) - 0.5)
    t = near[:, None] + (far - near)[:, None] * (steps / samples).clamp(0.0, 1.0)  # [R, S+1]
    pts = o[:, None] + t[..., None] * d[:, None]
    sdf, feat = field.sdf(pts.reshape(-1, 3))
    sdf = sdf.reshape(t.shape)
    rgb = field.color(pts.reshape(-1, 3), feat).reshape(*t.shape, 3)
    cdf = torch.sigmoid(sdf * field.inv_s())
    alpha = ((cdf[:, :-1] - cdf[:, 1:]) / (cdf[:, :-1] + 1e-5)).clamp(0.0, 1.0)  # [R, S]
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-7], 1), 1)[:, :-1]
    w = alpha * trans
    section_rgb = 0.5 * (rgb[:, :-1] + rgb[:, 1:])
    opacity = w.sum(1)
    color = (w[..., None] * section_rgb).sum(1) + (1.0 - opacity[:, None])  # white background
    return color, opacity, pts, w


def fit_neus(
    images: Tensor,  # [N, H, W, 3] in [0, 1], white background
    masks: Tensor,  # [N, H, W] in [0, 1], 1 = object
    cameras: Cameras,  # N cameras, image size H = W
    cfg: NeuSConfig,
    impl: str = "auto",
    seed: int = 0,
    progress: Progress | None = None,
    hull_sdf: Tensor | None = None,  # [R, R, R] signed distance to the visual hull on grid_points(R, BOUND)
) -> NeuSField:
    """With `hull_sdf` (engine.recon.hull), the SDF is first fitted to it for
    cfg.hull_init_steps steps, and points outside the hull are kept outside (cfg.hull_weight)."""
    device = images.device
    # Seeded without touching the caller's global RNG state.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        field = NeuSField(cfg, impl).to(device)
        hull = None if hull_sdf is None else hull_sdf.to(device)[None, None].float()  # [1, 1, R, R, R]
        if cfg.coarse_to_fine_steps > 0:  # the hull too is first fitted with the coarse levels only
            field.set_levels(cfg.coarse_levels)
        if hull is not None and cfg.hull_init_steps > 0:
            _fit_to_hull(field, hull, cfg)
        return _fit(field, images, masks, cameras, cfg, hull, progress)


def hull_lookup(hull: Tensor, x: Tensor) -> Tensor:  # [1, 1, R, R, R] indexed [x, y, z], x [N, 3] -> [N]
    """Trilinear sample of a grid_points-lattice volume (grid_sample takes (z, y, x) order)."""
    return F.grid_sample(hull, (x / BOUND).flip(-1)[None, None, None], align_corners=True,
                         padding_mode="border")[0, 0, 0, 0]


def _fit_to_hull(field: NeuSField, hull: Tensor, cfg: NeuSConfig) -> None:
    """Regress the SDF onto the hull's signed distance: half the points uniform in the cube,
    half within a few voxels of the hull's surface, where the thin parts are decided."""
    device = hull.device
    r = hull.shape[-1]
    h = 2.0 * BOUND / (r - 1)
    lattice = torch.linspace(-BOUND, BOUND, r, device=device)
    near = torch.nonzero(hull[0, 0].abs() < 2.0 * h)  # [K, 3] voxel indices
    opt = torch.optim.Adam(list(field.grid.parameters()) + list(field.sdf_net.parameters()), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-15)
    n = cfg.hull_points // 2
    for _ in range(cfg.hull_init_steps):
        pick = near[torch.randint(0, len(near), (n,), device=device)]
        x = torch.cat([torch.rand(n, 3, device=device) * 2.0 - 1.0, lattice[pick] + torch.randn(n, 3, device=device) * h])
        x = x.clamp(-BOUND, BOUND)
        loss = (field.sdf(x)[0] - hull_lookup(hull, x)).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _fit(field: NeuSField, images: Tensor, masks: Tensor, cameras: Cameras, cfg: NeuSConfig, hull: Tensor | None,
         progress: Progress | None) -> NeuSField:
    device = images.device
    rays = [cameras.rays(i) for i in range(len(cameras))]
    origins = torch.stack([r[0] for r in rays]).reshape(-1, 3).to(device)
    dirs = torch.stack([r[1] for r in rays]).reshape(-1, 3).to(device)
    target_rgb, target_mask = images.reshape(-1, 3), masks.reshape(-1)
    params = [
        {"params": list(field.grid.parameters()) + list(field.sdf_net.parameters()) + list(field.color_net.parameters()), "lr": cfg.lr},
        {"params": [field.variance], "lr": cfg.lr_variance},
    ]
    opt = torch.optim.Adam(params, betas=(0.9, 0.99), eps=1e-15)
    def lr_factor(it: int) -> float:  # exponential decay to 0.1 by the end (steps = 0: the start alone), after the warm-up
        return min(1.0, (it + 1) / (cfg.lr_warmup_steps + 1)) * 0.1 ** (it / max(cfg.steps, 1))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    for it in range(cfg.steps):
        if cfg.coarse_to_fine_steps > 0:
            grow = (cfg.n_levels - cfg.coarse_levels) * it // cfg.coarse_to_fine_steps
            field.set_levels(min(cfg.n_levels, cfg.coarse_levels + grow))
        idx = torch.randint(0, origins.shape[0], (cfg.rays_per_step,), device=device)
        rgb, opacity, pts, weights = render_rays(field, origins[idx], dirs[idx], cfg.samples_per_ray, jitter=True)
        loss_rgb = (rgb - target_rgb[idx]).abs().mean()
        m = target_mask[idx]
        op = opacity.clamp(1e-3, 1.0 - 1e-3)
        loss_mask = -(m * op.log() + (1.0 - m) * (1.0 - op).log()).mean()
        eik_pts = torch.cat([_random_in_sphere(cfg.eikonal_points // 2, device), _pick(pts.reshape(-1, 3), cfg.eikonal_points // 2)])
        grad, sdf_at = field.sdf_gradient(eik_pts, with_value=True)
        loss_eik = ((grad.norm(dim=-1) - 1.0) ** 2).mean()
        loss = loss_rgb + cfg.mask_weight * loss_mask + cfg.eikonal_weight * loss_eik
        if hull is not None and cfg.hull_weight > 0:
            # The hull contains the object, so a point's distance to the object is at least
            # its distance to the hull: penalise only SDF values below that (outside the hull).
            loss = loss + cfg.hull_weight * torch.relu(hull_lookup(hull, eik_pts) - sdf_at).mean()
        if cfg.curvature_weight > 0:
            loss = loss + cfg.curvature_weight * field.sdf_laplacian(_surface_points(pts, weights, cfg.curvature_points)).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress("neus", it + 1, cfg.steps, float(loss.detach()))
    field.set_levels(cfg.n_levels)
    return field


def _random_in_sphere(n: int, device: torch.device) -> Tensor:  # [n, 3]
    x = torch.randn(n, 3, device=device)
    return x / x.norm(dim=-1, keepdim=True) * torch.rand(n, 1, device=device) ** (1.0 / 3.0) * BOUND


def _surface_points(pts: Tensor, weights: Tensor, n: int) -> Tensor:  # [R, S+1, 3], [R, S] -> [n, 3]
    """Section midpoints drawn by their rendering weight: points on the surface the views see."""
    mid = 0.5 * (pts[:, :-1] + pts[:, 1:]).reshape(-1, 3)
    w = weights.detach().reshape(-1) + 1e-8
    return mid[torch.multinomial(w, n, replacement=True)].detach()


def _pick(x: Tensor, n: int) -> Tensor:
    return x[torch.randint(0, x.shape[0], (n,), device=x.device)].detach()


def field_functions(field: NeuSField, device: torch.device) -> tuple[Callable, Callable]:
    """numpy adapters (sdf_fn, color_fn) for engine.recon.mesh.extract_mesh."""

    @torch.no_grad()
    def sdf_fn(points: np.ndarray) -> np.ndarray:
        return field.sdf(torch.as_tensor(points, dtype=torch.float32, device=device))[0].cpu().numpy()

    @torch.no_grad()
    def color_fn(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(points, dtype=torch.float32, device=device)
        return field.color(x, field.sdf(x)[1]).cpu().numpy()

    return sdf_fn, color_fn
