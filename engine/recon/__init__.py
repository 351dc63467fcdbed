"""Hi3D's third step: 16 orbit views -> watertight, textured triangle mesh.

16 views --3DGS fit--> M views rendered between neighbouring orbit views --hash-grid NeuS
on the 16 + M views (optionally started from the masks' visual hull)--> SDF --marching cubes, largest component--> Mesh (+ colors from
the NeuS color field) --xatlas UVs, the 16 views baked at their full resolution--> texture.
Camera convention: engine.cameras.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from hi3d.engine.cameras import hi3d_cameras, interpolated_azimuths, orbit_cameras
from hi3d.engine.recon.config import PRESETS, ReconConfig, recon_preset
from hi3d.engine.recon.gaussians import fit_gaussians, render_views, save_gaussians_ply
from hi3d.engine.recon.hull import signed_distance, visual_hull
from hi3d.engine.recon.mesh import Mesh, extract_mesh, load_mesh, save_mesh
from hi3d.engine.recon.neus import field_functions, fit_neus
from hi3d.engine.recon.texture import bake_texture
from hi3d.engine.recon.views import (
    check_views,
    foreground_masks,
    load_views,
    resize_views,
)

__all__ = ["reconstruct", "save_mesh", "load_mesh", "load_views", "Mesh", "ReconConfig", "recon_preset", "PRESETS"]

Progress = Callable[[str, int, int, float], None]


def reconstruct(
    views: Tensor,  # [16, 3, H, W] in [0, 1], white background, H = W, orbit order
    elevation_deg: float,
    cfg: ReconConfig,
    progress: Progress | None = None,
    gaussians_path: str | os.PathLike | None = None,
) -> Mesh:
    """Reconstruct a mesh from Hi3D's 16 orbit views (see engine.cameras for the cameras).

    `progress(stage, step, total, loss)` is called after every optimisation step of the
    stages "gaussians" and "neus". With cfg.num_interp == 0 the 3DGS fit is skipped
    (unless `gaussians_path` asks for the Gaussians, saved as a standard 3DGS .ply).
    With cfg.texture.enabled the 16 views, at their input resolution, are baked into a
    texture atlas (engine.recon.texture); the vertex colors stay as well.
    """
    check_views(views)
    device = torch.device(cfg.device)
    views = views.float().to(device)
    masks_full = foreground_masks(views)[:, None]  # [V, 1, H, W]
    num_views = views.shape[0]

    images = resize_views(views, cfg.image_size)
    masks = _resize_mask(masks_full, cfg.image_size)
    azimuths = list(hi3d_cameras(elevation_deg, cfg.image_size).azimuths_deg)
    if cfg.num_interp > 0 or gaussians_path is not None:
        gs_cams = hi3d_cameras(elevation_deg, cfg.gs_image_size)
        gs_images = resize_views(views, cfg.gs_image_size).permute(0, 2, 3, 1)
        gs_masks = _resize_mask(masks_full, cfg.gs_image_size)[:, 0]
        gaussians = fit_gaussians(gs_images, gs_masks, gs_cams, cfg.gaussians, cfg.kernel_impl, cfg.seed, progress)
        if gaussians_path is not None:
            save_gaussians_ply(gaussians, gaussians_path)
        if cfg.num_interp > 0:
            extra = interpolated_azimuths(num_views, cfg.num_interp)
            rgb, alpha = render_views(gaussians, orbit_cameras(extra, elevation_deg, cfg.image_size), cfg.kernel_impl)
            images = torch.cat([images, rgb.permute(0, 3, 1, 2).clamp(0.0, 1.0)])
            masks = torch.cat([masks, alpha[:, None].clamp(0.0, 1.0)])
            azimuths += extra
    cameras = orbit_cameras(azimuths, elevation_deg, cfg.image_size)
    hull = None
    if cfg.neus.hull_resolution > 0:
        # From the 16 input masks at their full resolution (not the 3DGS-rendered ones).
        occupancy = visual_hull(masks_full[:, 0], hi3d_cameras(elevation_deg, views.shape[-1]), cfg.neus.hull_resolution)
        hull = torch.from_numpy(signed_distance(occupancy)) if occupancy.any() else None
    field = fit_neus(
        images.permute(0, 2, 3, 1), masks[:, 0], cameras, cfg.neus, cfg.kernel_impl, cfg.seed, progress, hull
    )
    sdf_fn, color_fn = field_functions(field, device)
    mesh = extract_mesh(sdf_fn, color_fn, cfg.mc_resolution, bound=1.0)
    if not cfg.texture.enabled:
        return mesh
    return bake_texture(mesh, views.cpu(), hi3d_cameras(elevation_deg, views.shape[-1]), cfg.texture)


def _resize_mask(masks: Tensor, size: int) -> Tensor:  # [V, 1, H, W] -> [V, 1, size, size]
    if masks.shape[-1] == size:
        return masks
    return F.interpolate(masks, size=(size, size), mode="area" if size < masks.shape[-1] else "bilinear")
