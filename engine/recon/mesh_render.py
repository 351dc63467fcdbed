"""A small z-buffer triangle rasterizer (numpy) for vertex-colored meshes.

It renders ground-truth meshes into Hi3D's view layout (white background, straight alpha)
and, orthographically, counts ray crossings for the volume-IoU occupancy test. Triangles
are rasterized in buckets of equal bounding-window size, so the work is vectorized even
though triangle sizes vary.
"""
from __future__ import annotations

import numpy as np

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


def render_mesh(
    vertices: np.ndarray,  # [V, 3] world
    faces: np.ndarray,  # [F, 3]
    colors: np.ndarray,  # [V, 3] albedo in [0, 1]
    cameras: Cameras,
    supersample: int = 2,
    shade: bool = True,
) -> np.ndarray:  # [N, H, W, 4] float32 RGBA in [0, 1], RGB composited on white
    """Render a mesh from every camera; `supersample`^2 samples per pixel anti-alias edges."""
    vertices = np.asarray(vertices, np.float64)
    colors = np.asarray(colors, np.float64)
    if shade:
        light = LIGHT_DIR / np.linalg.norm(LIGHT_DIR)
        lambert = np.clip(vertex_normals(vertices, faces) @ light, 0.0, 1.0)
        colors = colors * (AMBIENT + (1.0 - AMBIENT) * lambert)[:, None]
    size = cameras.size * supersample
    K = cameras.K.double().numpy().copy()
    K[:2] *= supersample
    out = []
    for view in cameras.viewmats.double().numpy():
        cam = vertices @ view[:3, :3].T + view[:3, 3]
        z = cam[:, 2]
        if (z <= 1e-6).any():
            raise ValueError("mesh reaches behind a camera; keep objects inside the unit sphere")
        uv = (cam[:, :2] / z[:, None]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
        t, p, bary = triangle_fragments(uv[faces], size, size)
        inv_z = 1.0 / z[faces[t]]  # [F, 3]: perspective-correct interpolation weights
        w = bary * inv_z
        depth = 1.0 / w.sum(1)
        rgb = (w[..., None] * colors[faces[t]]).sum(1) * depth[:, None]
        order = np.lexsort((depth, p))  # nearest fragment first within each pixel
        p, rgb = p[order], rgb[order]
        first = np.ones(len(p), bool)
        first[1:] = p[1:] != p[:-1]
        img = np.ones((size * size, 4))
        img[:, 3] = 0.0
        img[p[first], :3] = rgb[first]
        img[p[first], 3] = 1.0
        img = img.reshape(cameras.size, supersample, cameras.size, supersample, 4).mean((1, 3))
        out.append(img)
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)
