"""Visual hull of the views' masks, as a signed-distance grid that NeuS starts from.

A point whose projection falls outside the object's mask in any view cannot be on the
object (shape from silhouette, Laurentini 1994): the intersection of the 16 mask cones is a
closed superset of the object. Its thin parts are closed too: a table's top seen from the
side is a band in every silhouette, so the hull holds a solid slab there, where NeuS started
from a sphere has to grow one through sparse ray samples and can tear it.
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
    R, t = cameras.viewmats[:, :3, :3].float().to(device), cameras.viewmats[:, :3, 3].float().to(device)
    K, size = cameras.K.float().to(device), cameras.size
    for v in range(len(cameras)):
        cam = pts[alive] @ R[v].T + t[v]  # [N, 3] OpenCV camera frame
        z = cam[:, 2].clamp(min=1e-6)
        u = K[0, 0] * cam[:, 0] / z + K[0, 2]  # pixel coordinates, pixel k spans [k, k + 1)
        w = K[1, 1] * cam[:, 1] / z + K[1, 2]
        uv = torch.stack([u, w], -1) / size * 2.0 - 1.0  # grid_sample's [-1, 1], align_corners=False
        m = F.grid_sample(masks[v][None, None].float(), uv[None, None], mode="bilinear",
                          padding_mode="zeros", align_corners=False)[0, 0, 0]
        alive = alive[(m > MASK_THRESHOLD) & (cam[:, 2] > 0)]
    inside = torch.zeros(len(pts), dtype=torch.bool, device=device)
    inside[alive] = True
    return inside.reshape(resolution, resolution, resolution).cpu().numpy()


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
    axis = np.linspace(-bound, bound, resolution)
    sdf = signed_distance(visual_hull(masks, cameras, resolution, bound), bound)
    lookup = RegularGridInterpolator((axis, axis, axis), sdf, bounds_error=False, fill_value=float(sdf.max()))
    return extract_mesh(lookup, lambda p, n: np.full((len(p), 3), 0.5, np.float32), resolution, bound)
