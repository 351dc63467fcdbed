"""Hi3D's orbit cameras and the views interpolated between them.

One convention everywhere in hi3d-engine:

- World: right-handed, **+z is up**. The object sits at the origin, inside the unit sphere.
- Orbit camera k of V (V = 16 in Hi3D) sits at distance `radius` (1.5) from the origin, at
  azimuth `360 * k / V` degrees and at the video's single elevation `e` (degrees, positive =
  camera above the equator, looking down). Azimuth 0 is on the +x axis and azimuth grows
  counter-clockwise seen from above (+x towards +y):
  `center = radius * (cos e cos a, cos e sin a, sin e)`.
  Frame 0 (the input image's view) therefore looks along -x.
- Extrinsics are OpenCV world-to-camera 4x4 matrices: camera +x right, +y down, +z forward
  (the viewing direction). Image pixel (u, v) has its center at (u + 0.5, v + 0.5);
  the principal point is the image center.
- Intrinsics: a 35 mm lens on a 32 mm sensor (the Blender setting Hi3D's training data was
  rendered with): square images, FoV = 2 atan(16 / 35) = 49.134 degrees,
  focal length in pixels = size * 35 / 32.

If a generated video happens to orbit the other way, reconstruction still succeeds and
yields the mirror image of the object (the views are consistent with a mirrored scene).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hi3d.engine.errors import InvalidInput

HI3D_RADIUS = 1.5
HI3D_NUM_VIEWS = 16
HI3D_FOV_DEG = math.degrees(2.0 * math.atan(16.0 / 35.0))  # 49.134


@dataclass(frozen=True)
class Cameras:
    """A set of square pinhole cameras sharing one intrinsic matrix."""

    viewmats: Tensor  # [V, 4, 4] world-to-camera, OpenCV
    K: Tensor  # [3, 3]
    size: int  # image width = height, pixels
    azimuths_deg: tuple[float, ...]
    elevation_deg: float

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def centers(self) -> Tensor:  # [V, 3]
        R = self.viewmats[:, :3, :3]
        t = self.viewmats[:, :3, 3:]
        return -(R.transpose(1, 2) @ t)[..., 0]

    def project(self, points: Tensor, index: int) -> tuple[Tensor, Tensor]:
        """World points [N, 3] -> pixel coordinates [N, 2] (pixel k spans [k, k + 1)) and OpenCV
        camera depth [N] in camera `index`: the inverse of `rays`."""
        vm = self.viewmats[index].to(points)
        cam = points @ vm[:3, :3].T + vm[:3, 3]
        K = self.K.to(points)
        return cam[:, :2] / cam[:, 2:].clamp(min=1e-6) * K[[0, 1], [0, 1]] + K[:2, 2], cam[:, 2]

    def rays(self, index: int) -> tuple[Tensor, Tensor]:
        """World-space ray origins and unit directions through every pixel center."""
        device = self.viewmats.device
        px = torch.arange(self.size, dtype=torch.float32, device=device) + 0.5
        v, u = torch.meshgrid(px, px, indexing="ij")
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        d_cam = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], -1)
        R = self.viewmats[index, :3, :3]
        d = d_cam @ R  # R^T d_cam, row-vector form
        d = d / d.norm(dim=-1, keepdim=True)
        o = self.centers()[index].expand_as(d)
        return o, d  # [H, W, 3] each


def intrinsics(size: int, fov_deg: float = HI3D_FOV_DEG) -> Tensor:  # [3, 3]
    f = 0.5 * size / math.tan(math.radians(fov_deg) / 2.0)
    return torch.tensor([[f, 0.0, size / 2.0], [0.0, f, size / 2.0], [0.0, 0.0, 1.0]])


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV world-to-camera matrix of a camera at `eye` looking at `target`."""
    forward = target - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    if right.norm() < 1e-8:  # looking straight along `up`: any right vector will do
        right = torch.linalg.cross(forward, torch.tensor([1.0, 0.0, 0.0], dtype=eye.dtype))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    R = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    M = torch.eye(4, dtype=eye.dtype)
    M[:3, :3] = R
    M[:3, 3] = -R @ eye
    return M


def orbit_position(azimuth_deg: float, elevation_deg: float, radius: float = HI3D_RADIUS) -> Tensor:
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return radius * torch.tensor([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def orbit_cameras(
    azimuths_deg: list[float] | tuple[float, ...],
    elevation_deg: float,
    size: int,
    radius: float = HI3D_RADIUS,
    fov_deg: float = HI3D_FOV_DEG,
) -> Cameras:
    up = torch.tensor([0.0, 0.0, 1.0])
    target = torch.zeros(3)
    mats = [look_at(orbit_position(a, elevation_deg, radius), target, up) for a in azimuths_deg]
    return Cameras(torch.stack(mats), intrinsics(size, fov_deg), size, tuple(azimuths_deg), elevation_deg)


def hi3d_cameras(elevation_deg: float, size: int, num_views: int = HI3D_NUM_VIEWS) -> Cameras:
    """The cameras of Hi3D's 16 generated views (frame k at azimuth 360 k / 16)."""
    return orbit_cameras([360.0 * k / num_views for k in range(num_views)], elevation_deg, size)


def interpolated_azimuths(num_views: int, m: int) -> list[float]:
    """Azimuths of `m` extra views spread over the gaps between neighbouring orbit views.

    Gap g lies between views g and g+1 (mod num_views). Each gap gets m // num_views views,
    the remaining m % num_views go to gaps spread evenly around the orbit; the views of a
    gap split it into equal parts (one view: the midpoint).
    """
    if m < 0:
        raise InvalidInput(f"number of interpolated views must be >= 0, got {m}")
    step = 360.0 / num_views
    extra = m % num_views
    bonus = {round(i * num_views / extra) % num_views for i in range(extra)} if extra else set()
    out = []
    for g in range(num_views):
        n = m // num_views + (1 if g in bonus else 0)
        out += [step * (g + j / (n + 1)) for j in range(1, n + 1)]
    return out
