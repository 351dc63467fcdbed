"""Texture baking: UV-unwrap a mesh with xatlas and paint its atlas from the input views.

Each texel is a point on the surface (its position and interpolated normal come from the
triangle it falls in). Every view that sees the point contributes its bilinear color with
weight max(cos, 0) ** power, cos being the angle between the normal and the direction to
the camera, so head-on views dominate and grazing ones, which smear, barely count.
A view sees the point only if the point's depth is within a tolerance of the view's
z-buffer (the mesh rasterized from that view, engine.recon.mesh_render.depth_maps), taken
as the minimum over 3x3 pixels so that occlusion edges and silhouettes are rejected a pixel
early rather than painting one surface with another's color. Texels no view sees keep the
mesh's vertex colors (the NeuS color field), and colors are then dilated past chart borders
into the empty atlas so that filtering and mipmaps never read the background.
"""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
import xatlas
from torch import Tensor

from hi3d.engine.cameras import Cameras
from hi3d.engine.recon.config import TextureConfig
from hi3d.engine.recon.mesh import Mesh, TextureAtlas
from hi3d.engine.recon.mesh_render import depth_maps, triangle_fragments, vertex_normals


def bake_texture(mesh: Mesh, views: Tensor, cameras: Cameras, cfg: TextureConfig) -> Mesh:
    """`mesh` with a texture baked from `views` [N, 3, H, W] in [0, 1] seen by `cameras`.

    Where xatlas cannot unwrap the mesh, it warns and returns `mesh` with its vertex colors.
    """
    try:
        uv, uv_faces, uv_vertex = unwrap(mesh, cfg)
    except (RuntimeError, ValueError) as e:
        warnings.warn(f"UV unwrapping failed ({e}); the mesh keeps its vertex colors", stacklevel=2)
        return mesh
    image = bake_atlas(mesh, uv, uv_faces, views, cameras, cfg)
    return replace(mesh, texture=TextureAtlas(image, uv, uv_faces, uv_vertex))


def unwrap(mesh: Mesh, cfg: TextureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas charts packed into one page: uv [U, 2] (v up), uv_faces [F, 3], uv_vertex [U]."""
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(mesh.vertices, np.float32), np.ascontiguousarray(mesh.faces, np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = cfg.size
    pack.padding = cfg.padding
    atlas.generate(xatlas.ChartOptions(), pack)
    if atlas.atlas_count != 1:
        raise RuntimeError(f"xatlas needed {atlas.atlas_count} pages of {cfg.size}^2 texels")
    uv_vertex, uv_faces, uv = atlas[0]
    uv_vertex, uv_faces = uv_vertex.astype(np.int64), uv_faces.astype(np.int64)
    if uv_faces.shape != mesh.faces.shape or not np.array_equal(uv_vertex[uv_faces], mesh.faces):
        raise RuntimeError("xatlas changed the mesh's faces")
    return uv.astype(np.float32), uv_faces, uv_vertex


def bake_atlas(
    mesh: Mesh,
    uv: np.ndarray,  # [U, 2] in [0, 1], v up
    uv_faces: np.ndarray,  # [F, 3], face for face with mesh.faces
    views: Tensor,  # [N, 3, H, W] in [0, 1]
    cameras: Cameras,
    cfg: TextureConfig,
) -> np.ndarray:  # [S, S, 3] uint8, row 0 = v 1
    size = cfg.size
    corners = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], -1)[uv_faces]  # texel units, y down
    face, texel, bary = triangle_fragments(corners, size, size)
    texel, first = np.unique(texel, return_index=True)  # charts do not overlap; keep one per texel
    tri = torch.from_numpy(mesh.faces[face[first]])  # [N, 3] the corners of each texel's triangle
    bary = torch.from_numpy(bary[first]).float()[..., None]  # [N, 3, 1]; affine in UV space, exact on the triangle
    vertices = mesh.vertices.astype(np.float64)
    points = (bary * torch.from_numpy(vertices).float()[tri]).sum(1)
    normals = (bary * torch.from_numpy(vertex_normals(vertices, mesh.faces)).float()[tri]).sum(1)
    normals = normals / normals.norm(dim=1, keepdim=True).clamp(min=1e-12)

    rgb, weight = _blend_views(points, normals, mesh, views, cameras, cfg)
    fallback = (bary * torch.from_numpy(mesh.colors).float()[tri]).sum(1)
    colors = torch.where((weight > 0)[:, None], rgb / weight.clamp(min=1e-12)[:, None], fallback)

    texel = torch.from_numpy(texel)
    image = torch.zeros(size * size, 3)
    filled = torch.zeros(size * size, dtype=torch.bool)
    image[texel] = colors
    filled[texel] = True
    image = _dilate(image.reshape(size, size, 3), filled.reshape(size, size), cfg.dilation)
    return np.round(image.clamp(0.0, 1.0).numpy() * 255).astype(np.uint8)


def _blend_views(points: Tensor, normals: Tensor, mesh: Mesh, views: Tensor, cameras: Cameras,
                 cfg: TextureConfig) -> tuple[Tensor, Tensor]:  # weighted color sum [N, 3], weight [N]
    size = cameras.size
    if views.shape[-1] != size or views.shape[0] != len(cameras):
        raise ValueError(f"views {tuple(views.shape)} do not match {len(cameras)} cameras of {size} px")
    # Background (+inf) becomes depth 0, so the 3x3 minimum rejects texels next to a silhouette,
    # whose bilinear samples would mix in the white background.
    zbuf = depth_maps(mesh.vertices, mesh.faces, cameras)
    zbuf = -F.max_pool2d(-torch.nan_to_num(zbuf, posinf=0.0)[:, None], 3, stride=1, padding=1)[:, 0]
    focal = float(cameras.K[0, 0])
    rgb_sum = torch.zeros(len(points), 3)
    weight_sum = torch.zeros(len(points))
    for k in range(len(cameras)):
        view = cameras.viewmats[k].float()
        cam = points @ view[:3, :3].T + view[:3, 3]
        z = cam[:, 2]
        pix = cam[:, :2] / z[:, None] * focal + float(cameras.K[0, 2])
        to_cam = cameras.centers()[k].float() - points
        cos = (normals * to_cam).sum(1) / to_cam.norm(dim=1)
        ij = pix.floor().long()
        idx = torch.nonzero((ij >= 0).all(1) & (ij < size).all(1) & (cos > 0))[:, 0]  # facing, in the image
        ij, z_in = ij[idx], z[idx]
        tolerance = cfg.depth_tolerance + cfg.depth_tolerance_px * z_in / focal
        idx = idx[z_in <= zbuf[k].reshape(-1)[ij[:, 1] * size + ij[:, 0]] + tolerance]
        grid = (pix[idx] / size * 2.0 - 1.0)[None, None]  # pixel centres at i + 0.5
        color = F.grid_sample(views[k : k + 1].float(), grid, mode="bilinear", align_corners=False)[0, :, 0].T
        w = cos[idx] ** cfg.cosine_power
        rgb_sum.index_add_(0, idx, w[:, None] * color)
        weight_sum.index_add_(0, idx, w)
    return rgb_sum, weight_sum


def _dilate(image: Tensor, filled: Tensor, steps: int) -> Tensor:  # [S, S, 3], [S, S] -> [S, S, 3]
    """Grow the filled region by one texel per step (mean of filled 3x3 neighbours); the
    texels left over take the mean color, so a mipmap of the atlas does not darken."""
    mask = filled[..., None].float()
    x = torch.cat([image * mask, mask], -1).permute(2, 0, 1)[None]  # [1, 4, S, S]: color * mask, mask
    for _ in range(steps):
        pooled = F.avg_pool2d(x, 3, stride=1, padding=1)  # one pass for colors and counts
        grow = (pooled[:, 3:] > 0) & (x[:, 3:] == 0)
        x = torch.where(grow, torch.cat([pooled[:, :3] / pooled[:, 3:].clamp(min=1e-12), torch.ones_like(pooled[:, 3:])], 1), x)
    out = x[0, :3].permute(1, 2, 0)
    rest = x[0, 3] == 0
    out[rest] = out[~rest].mean(0) if (~rest).any() else 0.5
    return out
