"""A small z-buffer triangle rasterizer (numpy) for vertex-colored and textured meshes.

It renders meshes into Hi3D's view layout (white background, straight alpha), gives the
z-buffers that texture baking tests visibility against, and, orthographically, counts ray
crossings for the volume-IoU occupancy test. Triangles are rasterized in buckets of equal
bounding-window size, so the work is vectorized even though triangle sizes vary.
"""
from __future__ import annotations

import numpy as np
import torch

from hi3d.engine.cameras import Cameras

# A world-fixed light: shading is the same from every view, as for a diffuse object.
LIGHT_DIR = np.array([0.4, 0.3, 0.866])
AMBIENT = 0.6


def triangle_fragments(
    tri: np.ndarray,  # [T, 3, 2] pixel coordinates of the corners
    width: int,
    height: int,
    offset: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (triangle, pixel) pair whose sample point (u + offset, v + offset) is inside.

    Returns triangle ids [F], flat pixel ids v * width + u [F], barycentrics [F, 3].
    Points exactly on an edge count as outside: callers shift samples by an irrational
    offset where double counting shared edges would matter (ray parity).
    """
    lo = np.floor(tri.min(1) - offset).astype(np.int64) + 1  # first sample index inside bbox
    hi = np.floor(tri.max(1) - offset).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    extent = (hi - lo).max(1) + 1
    visible = (hi >= lo).all(1)
    out_t, out_p, out_b = [], [], []
    window = 1
    while True:
        sel = np.nonzero(visible & (extent <= window) & (extent > window // 2))[0]
        chunk = max(1, 2_000_000 // (window * window))
        for s in range(0, len(sel), chunk):
            ids = sel[s : s + chunk]
            grid = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="xy"), -1).reshape(-1, 2)
            pix = lo[ids, None, :] + grid[None]  # [t, w*w, 2]
            p = pix + offset
            a, b, c = tri[ids, 0, None], tri[ids, 1, None], tri[ids, 2, None]
            area = _cross(b - a, c - a)  # [t, 1]
            degenerate = np.abs(area) <= 1e-12
            area = np.where(degenerate, 1.0, area)
            wa = _cross(b - p, c - p) / area
            wb = _cross(c - p, a - p) / area
            wc = 1.0 - wa - wb
            inside = (wa > 0) & (wb > 0) & (wc > 0) & (pix[..., 0] < width) & (pix[..., 1] < height)
            inside &= ~degenerate
            ti, ki = np.nonzero(inside)
            out_t.append(ids[ti])
            out_p.append(pix[ti, ki, 1] * width + pix[ti, ki, 0])
            out_b.append(np.stack([wa[ti, ki], wb[ti, ki], wc[ti, ki]], -1))
        if window >= extent.max(initial=0):
            break
        window *= 2
    if not out_t:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    return np.concatenate(out_t), np.concatenate(out_p), np.concatenate(out_b)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:  # [V, 3]
    fn = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def project(vertices: np.ndarray, viewmat: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] -> pixel coordinates [N, 2] and camera depth [N] (OpenCV camera)."""
    cam = vertices @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = cam[:, 2]
    if (z <= 1e-6).any():
        raise ValueError("mesh reaches behind a camera; keep objects inside the unit sphere")
    return (cam[:, :2] / z[:, None]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]], z


def depth_maps(vertices: np.ndarray, faces: np.ndarray, cameras: Cameras) -> torch.Tensor:
    """A z-buffer per camera: [N, H, W] camera depth of the nearest surface, +inf where none."""
    vertices = np.asarray(vertices, np.float64)
    size = cameras.size
    out = []
    for view in cameras.viewmats.double().numpy():
        uv, z = project(vertices, view, cameras.K.double().numpy())
        t, p, bary = triangle_fragments(uv[faces], size, size)
        depth = 1.0 / (bary / z[faces[t]]).sum(1)  # perspective-correct: 1/z is affine in the image
        zbuf = torch.full((size * size,), torch.inf, dtype=torch.float32)
        zbuf.scatter_reduce_(0, torch.from_numpy(p), torch.from_numpy(depth).float(), "amin")
        out.append(zbuf.reshape(size, size))
    return torch.stack(out)


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of image [S, S, C] at uv [N, 2] (v up, so row 0 is v = 1), clamped at the borders."""
    s = image.shape[0]
    x = np.clip(uv[:, 0] * s - 0.5, 0.0, s - 1.0)
    y = np.clip((1.0 - uv[:, 1]) * s - 0.5, 0.0, s - 1.0)
    x0, y0 = np.minimum(np.floor(x).astype(np.int64), s - 2), np.minimum(np.floor(y).astype(np.int64), s - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def render_mesh(
    vertices: np.ndarray,  # [V, 3] world
    faces: np.ndarray,  # [F, 3]
    colors: np.ndarray,  # [V, 3] albedo in [0, 1]
    cameras: Cameras,
    supersample: int = 2,
    shade: bool = True,
    texture: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:  # [N, H, W, 4] float32 RGBA in [0, 1], RGB composited on white
    """Render a mesh from every camera; `supersample`^2 samples per pixel anti-alias edges.

    `texture` = (uv of each face corner [F, 3, 2], image [S, S, 3] in [0, 1]) replaces the
    vertex colors with a texture lookup.
    """
    vertices = np.asarray(vertices, np.float64)
    factor = np.ones(len(vertices))
    if shade:
        light = LIGHT_DIR / np.linalg.norm(LIGHT_DIR)
        lambert = np.clip(vertex_normals(vertices, faces) @ light, 0.0, 1.0)
        factor = AMBIENT + (1.0 - AMBIENT) * lambert
    if texture is None:
        corners = (np.asarray(colors, np.float64) * factor[:, None])[faces]  # [F, 3, 3]
    else:  # interpolate uv and the shading factor, look the texture up per pixel
        corners = np.concatenate([np.asarray(texture[0], np.float64), factor[faces][..., None]], -1)
    size = cameras.size * supersample
    K = cameras.K.double().numpy().copy()
    K[:2] *= supersample
    out = []
    for view in cameras.viewmats.double().numpy():
        uv, z = project(vertices, view, K)
        t, p, bary = triangle_fragments(uv[faces], size, size)
        inv_z = 1.0 / z[faces[t]]  # [F, 3]: perspective-correct interpolation weights
        w = bary * inv_z
        depth = 1.0 / w.sum(1)
        attr = (w[..., None] * corners[t]).sum(1) * depth[:, None]
        order = np.lexsort((depth, p))  # nearest fragment first within each pixel
        p, attr = p[order], attr[order]
        first = np.ones(len(p), bool)
        first[1:] = p[1:] != p[:-1]
        p, attr = p[first], attr[first]
        rgb = attr if texture is None else sample_texture(np.asarray(texture[1], np.float64), attr[:, :2]) * attr[:, 2:]
        img = np.ones((size * size, 4))
        img[:, 3] = 0.0
        img[p, :3] = rgb
        img[p, 3] = 1.0
        img = img.reshape(cameras.size, supersample, cameras.size, supersample, 4).mean((1, 3))
        out.append(img)
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)
