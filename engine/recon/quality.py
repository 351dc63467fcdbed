"""Mesh quality against ground truth: Chamfer distance and volume IoU.

Protocol (the one of SyncDreamer / Wonder3D that the Hi3D paper reports in its Tables 2
and 4): each mesh is normalised on its own, translated so that its bounding box is
centred at the origin and scaled so that the box's longest side is 1.
- Chamfer distance: `num_points` (100k) points sampled uniformly (by area) on each surface;
  CD = (mean_{p in pred} min_g |p - g| + mean_{g in gt} min_p |g - p|) / 2 (unsquared).
- F-score at threshold tau (not in the paper; common in reconstruction benchmarks): the
  harmonic mean of precision (share of pred points within tau of gt) and recall (the
  converse), on the same samples as the Chamfer distance.
- Volume IoU: both meshes voxelised on the same 64^3 grid of voxel centres covering
  [-0.55, 0.55]^3; IoU = |inside_pred & inside_gt| / |inside_pred | inside_gt|.
"Inside" is decided by ray parity along +z (meshes must be closed, as marching-cubes
meshes are). Its floor (`iou_floor`): the ground-truth mesh against its own analytic SDF on
the same voxel centres, the best a reconstruction can score there; a grid is fine enough
for a shape when the floor is >= 0.97 (thin parts need finer grids than 64^3).
- Normal consistency: on the same kind of samples, with each sample's face normal, the mean
  |cos| between a sample's normal and that of the nearest sample on the other surface,
  averaged over both directions (1: every surface patch faces the way the other's nearest
  one does; unsigned, so an inward-oriented but correct surface still scores 1).
- Genus of the largest connected component: (2 - chi) / 2, chi = V - E + F its Euler
  characteristic, for a closed surface; a hole torn through a slab raises it by one. The per-mesh normalisation hides global scale errors (the paper's choice),
but also lets surface the views never see (below an object on an orbit that looks down)
shift the whole prediction. Where both meshes share one frame (our harness), `frame="gt"`
normalises both with the ground truth's box instead: the plain geometric error.

Color: PSNR of the reconstruction rendered at held-out azimuths (midway between orbit
views) against the ground truth rendered there, with the texture and with the vertex colors.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from hi3d.engine.cameras import Cameras, orbit_cameras
from hi3d.engine.recon.mesh import Mesh
from hi3d.engine.recon.mesh_render import render_mesh, triangle_fragments

HELD_OUT_AZIMUTHS = (11.25, 101.25, 191.25, 281.25)  # midway between orbit views 0|1, 4|5, 8|9, 12|13
IOU_RESOLUTION = 64
IOU_HALF_EXTENT = 0.55
# Shifts the ray grid off any lattice a mesh could be aligned with, so no ray meets an edge.
_RAY_JITTER = (0.5 + 1e-4 * np.pi, 0.5 + 1e-4 * np.e)


def normalize(vertices: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:  # [V, 3]
    """Centre the bounding box of `reference` (default: `vertices`) and scale its longest side to 1."""
    ref = vertices if reference is None else reference
    lo, hi = ref.min(0), ref.max(0)
    return (vertices - (lo + hi) / 2.0) / (hi - lo).max()


def _normalized_pair(pred: Mesh, gt: Mesh, frame: str) -> tuple[np.ndarray, np.ndarray]:
    if frame not in ("each", "gt"):
        raise ValueError(f"frame must be 'each' (paper) or 'gt', got {frame!r}")
    ref = None if frame == "each" else gt.vertices
    return normalize(pred.vertices, ref), normalize(gt.vertices, ref)


def surface_distances(
    pred: Mesh, gt: Mesh, num_points: int = 100_000, seed: int = 0, frame: str = "each"
) -> tuple[np.ndarray, np.ndarray]:  # [num_points] pred -> gt, [num_points] gt -> pred
    """Distances from points sampled on each normalised surface to the other surface's samples."""
    pv, gv = _normalized_pair(pred, gt, frame)
    p = _sample(pv, pred.faces, num_points, seed)
    g = _sample(gv, gt.faces, num_points, seed + 1)
    return cKDTree(g).query(p)[0], cKDTree(p).query(g)[0]


def chamfer_distance(pred: Mesh, gt: Mesh, num_points: int = 100_000, seed: int = 0, frame: str = "each") -> float:
    return chamfer_from(*surface_distances(pred, gt, num_points, seed, frame))


def chamfer_from(d_pg: np.ndarray, d_gp: np.ndarray) -> float:
    return float((d_pg.mean() + d_gp.mean()) / 2.0)


def f_score_from(d_pg: np.ndarray, d_gp: np.ndarray, threshold: float) -> float:
    precision, recall = float((d_pg < threshold).mean()), float((d_gp < threshold).mean())
    return 0.0 if precision + recall == 0.0 else 2.0 * precision * recall / (precision + recall)


def volume_iou(pred: Mesh, gt: Mesh, resolution: int = IOU_RESOLUTION, frame: str = "each") -> float:
    pv, gv = _normalized_pair(pred, gt, frame)
    a = occupancy(pv, pred.faces, resolution)
    b = occupancy(gv, gt.faces, resolution)
    return float((a & b).sum() / max((a | b).sum(), 1))


def iou_floor(sdf: Callable[[np.ndarray], np.ndarray], gt: Mesh, resolution: int = IOU_RESOLUTION) -> float:
    """IoU of the ground-truth mesh (in the paper's normalisation) against its analytic SDF
    `sdf` ([N, 3] world -> [N], negative inside) on the same voxel centres."""
    lo, hi = gt.vertices.min(0), gt.vertices.max(0)
    h = 2.0 * IOU_HALF_EXTENT / resolution
    axis = -IOU_HALF_EXTENT + (np.arange(resolution) + 0.5) * h
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    exact = (sdf(pts * (hi - lo).max() + (lo + hi) / 2.0) < 0.0).reshape(resolution, resolution, resolution)
    meshed = occupancy(normalize(gt.vertices), gt.faces, resolution)
    return float((exact & meshed).sum() / max((exact | meshed).sum(), 1))


def normal_consistency(pred: Mesh, gt: Mesh, num_points: int = 100_000, seed: int = 0, frame: str = "each") -> float:
    """Mean |cos| between each sample's normal and its nearest neighbour's on the other
    surface, averaged over both directions (see the module docstring)."""
    pv, gv = _normalized_pair(pred, gt, frame)
    p, pn = _sample_with_normals(pv, pred.faces, num_points, seed)
    g, gn = _sample_with_normals(gv, gt.faces, num_points, seed + 1)
    to_g, to_p = cKDTree(g).query(p)[1], cKDTree(p).query(g)[1]
    cos_pg = np.abs((pn * gn[to_g]).sum(1))
    cos_gp = np.abs((gn * pn[to_p]).sum(1))
    return float((cos_pg.mean() + cos_gp.mean()) / 2.0)


def genus(mesh: Mesh) -> int:
    """Genus of the largest connected component, (2 - chi) / 2, vertices merged by position
    first (marching cubes can repeat a vertex); meant for closed surfaces."""
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    largest = max(tm.split(only_watertight=False), key=lambda c: len(c.faces))
    return int(round((2 - largest.euler_number) / 2))


def to_z_up(vertices: np.ndarray, up: str) -> np.ndarray:  # [V, 3]
    """Vertices of a file whose up axis is `up` ("y": glTF, most OBJ exports) in our +z-up world,
    as Blender's importers turn them (x stays, y up becomes z up, z forward becomes -y)."""
    if up == "z":
        return vertices
    if up != "y":
        raise ValueError(f"up must be 'y' or 'z', got {up!r}")
    return np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], 1)


def occupancy(
    vertices: np.ndarray,  # [V, 3]
    faces: np.ndarray,  # [F, 3]
    resolution: int,
    half_extent: float = IOU_HALF_EXTENT,
) -> np.ndarray:  # [R, R, R] bool, indexed [x, y, z]
    """Voxel centres inside a closed mesh: count the surface crossings above each centre."""
    h = 2.0 * half_extent / resolution
    grid = (vertices + half_extent) / h  # voxel units: voxel i has its centre at i + 0.5
    tri = grid[faces]  # [F, 3, 3]
    # Orthographic rasterization along z; the jitter moves rays off lattice-aligned edges.
    t, pix, bary = triangle_fragments(tri[..., :2] - np.subtract(_RAY_JITTER, 0.5), resolution, resolution)
    z_hit = (bary * tri[t, :, 2]).sum(1)
    # crossing at z_hit lies above voxel centres k + 0.5 < z_hit, i.e. k < z_hit - 0.5
    k = np.clip(np.ceil(z_hit - 0.5), 0, resolution).astype(np.int64)
    counts = np.zeros((resolution * resolution, resolution + 1), np.int64)
    np.add.at(counts, (pix, k), 1)
    above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]  # crossings with index > voxel k
    inside = (above % 2 == 1).reshape(resolution, resolution, resolution)  # [y, x, z]
    return inside.transpose(1, 0, 2)


def _sample(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int) -> np.ndarray:
    return _sample_with_normals(vertices, faces, n, seed)[0]


def _sample_with_normals(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform by area [n, 3] and the unit normals of their faces [n, 3]."""
    tm = trimesh.Trimesh(vertices, faces, process=False)
    points, face_index = trimesh.sample.sample_surface(tm, n, seed=seed)
    return np.asarray(points), np.asarray(tm.face_normals)[face_index]


def render_reconstruction(mesh: Mesh, cameras: Cameras, textured: bool = True) -> np.ndarray:  # [N, H, W, 4]
    """Render a reconstructed mesh with its texture (or its vertex colors). Both hold the
    views' colors, shading included, so the renderer adds none."""
    tex = mesh.texture if textured else None
    texture = None if tex is None else (tex.uv[tex.uv_faces], tex.image / 255.0)
    return render_mesh(mesh.vertices, mesh.faces, mesh.colors, cameras, shade=False, texture=texture)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of images in [0, 1], over the pixels of `mask` (default: all)."""
    err = (np.asarray(a, np.float64) - b) ** 2
    return float(-10.0 * np.log10(max((err if mask is None else err[mask]).mean(), 1e-12)))


def held_out_psnr(mesh: Mesh, gt: Mesh, elevation_deg: float, size: int) -> dict[str, float]:
    """PSNR of the textured and the vertex-colored reconstruction (composited on white) at
    HELD_OUT_AZIMUTHS, against the ground truth rendered in Hi3D's layout (shaded)."""
    cams = orbit_cameras(HELD_OUT_AZIMUTHS, elevation_deg, size)
    target = render_mesh(gt.vertices, gt.faces, gt.colors, cams)[..., :3]
    return {"texture": psnr(render_reconstruction(mesh, cams)[..., :3], target),
            "vertex": psnr(render_reconstruction(mesh, cams, textured=False)[..., :3], target)}
