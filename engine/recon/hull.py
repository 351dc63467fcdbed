"""Visual hull of the views' masks, as a signed-distance grid that NeuS starts from.

A point whose projection falls outside the object's mask in any view cannot be on the
object (shape from silhouette, Laurentini 1994): the intersection of the 16 mask cones is a
closed superset of the object. Its thin parts are closed too: a table's top seen from the
side is a band in every silhouette, so the hull holds a solid slab there, where NeuS started
from a sphere has to grow one through sparse ray samples and can tear it.

Given each view's depth as well (exact, for a ground truth), carving away every point that a
view sees in front of its surface leaves the most that the 16 views can say of the shape
(space carving, Kutulakos & Seitz 2000, with the depth known): what is left beyond the object
is space that no view sees, which only a prior could empty.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator
from torch import Tensor

from hi3d.engine.cameras import Cameras
from hi3d.engine.recon.mesh import Mesh, extract_mesh, grid_points

MASK_THRESHOLD = 0.5  # a pixel is the object's when its mask is above this


def visual_hull(
    masks: Tensor,  # [V, H, W] in [0, 1], 1 = object
    cameras: Cameras,  # V cameras, image size H = W
    resolution: int,
    bound: float = 1.0,
) -> np.ndarray:  # [R, R, R] bool over the grid_points(resolution, bound) lattice, x slowest
    """Grid points that project inside every view's mask (outside the image counts as outside)."""
    device = masks.device
    pts = torch.from_numpy(grid_points(resolution, bound)).float().to(device)
    alive = torch.arange(len(pts), device=device)  # points no view has carved yet: each view tests only these
    for v in range(len(cameras)):
        uv, z = cameras.project(pts[alive], v)
        m = F.grid_sample(masks[v][None, None].float(), (uv / cameras.size * 2.0 - 1.0)[None, None], mode="bilinear",
                          padding_mode="zeros", align_corners=False)[0, 0, 0]  # grid_sample's [-1, 1], align_corners=False
        alive = alive[(m > MASK_THRESHOLD) & (z > 0)]
    inside = torch.zeros(len(pts), dtype=torch.bool, device=device)
    inside[alive] = True
    return inside.reshape(resolution, resolution, resolution).cpu().numpy()


def carve_by_depth(
    occupancy: np.ndarray,  # [R, R, R] bool over the grid_points(R, bound) lattice
    depth: Tensor,  # [V, H, W] camera depth of each pixel's surface, +inf where there is none
    cameras: Cameras,
    margin: float = 0.01,
    bound: float = 1.0,
) -> np.ndarray:  # [R, R, R] bool
    """The points of `occupancy` that no view sees more than `margin` in front of its surface.

    A point is compared with the nearest surface among the 3 x 3 pixels around its projection,
    so that a point beside a depth edge is never carved by the farther surface's pixel.
    """
    resolution = occupancy.shape[0]
    idx = torch.from_numpy(np.flatnonzero(occupancy))
    pts = torch.from_numpy(grid_points(resolution, bound)).float()[idx]
    near = -F.max_pool2d(-depth.float().nan_to_num(posinf=1e6)[:, None], 3, 1, 1)[:, 0]  # [V, H, W] 3 x 3 minimum
    seen_free = torch.zeros(len(idx), dtype=torch.bool)
    for v in range(len(cameras)):
        uv, z = cameras.project(pts, v)
        px = uv.floor().long().clamp(0, cameras.size - 1)
        seen_free |= z < near[v, px[:, 1], px[:, 0]] - margin
    out = occupancy.reshape(-1).copy()
    out[idx[seen_free].numpy()] = False
    return out.reshape(occupancy.shape)


def signed_distance(occupancy: np.ndarray, bound: float = 1.0) -> np.ndarray:  # [R, R, R] float32
    """Signed distance (world units, negative inside) to the boundary of a voxel set on the
    grid_points lattice: Euclidean distance transforms, each less half a voxel so that the
    zero level lies midway between an inside and an outside grid point."""
    h = 2.0 * bound / (occupancy.shape[0] - 1)
    outside = ndimage.distance_transform_edt(~occupancy) * h  # to the nearest inside point
    inside = ndimage.distance_transform_edt(occupancy) * h
    return np.where(occupancy, -(inside - 0.5 * h), outside - 0.5 * h).astype(np.float32)


def hull_mesh(masks: Tensor, cameras: Cameras, resolution: int, bound: float = 1.0) -> Mesh:
    """The visual hull as a grey mesh: what the silhouettes alone say of the shape, the
    reference a reconstruction must beat where the object is concave or its views never look."""
    return occupancy_mesh(visual_hull(masks, cameras, resolution, bound), bound)


def occupancy_mesh(occupancy: np.ndarray, bound: float = 1.0) -> Mesh:
    """A grey mesh of a voxel set on the grid_points lattice (a hull, carved or not)."""
    axis = np.linspace(-bound, bound, occupancy.shape[0])
    sdf = signed_distance(occupancy, bound)
    lookup = RegularGridInterpolator((axis, axis, axis), sdf, bounds_error=False, fill_value=float(sdf.max()))
    return extract_mesh(lookup, lambda p, n: np.full((len(p), 3), 0.5, np.float32), occupancy.shape[0], bound)
