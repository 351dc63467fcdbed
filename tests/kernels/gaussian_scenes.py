"""Small seeded Gaussian scenes and cameras shared by the rasterizer tests and bench."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def look_at_viewmat(eye: tuple[float, float, float], target=(0.0, 0.0, 0.0), up=(0.0, -1.0, 0.0)) -> Tensor:
    """World-to-camera [4, 4], OpenCV axes (x right, y down, z towards the target)."""
    eye_t, target_t, up_t = (torch.tensor(v, dtype=torch.float32) for v in (eye, target, up))
    z = torch.nn.functional.normalize(target_t - eye_t, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(z, up_t), dim=0)
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])  # rows: camera axes in world coordinates
    view = torch.eye(4)
    view[:3, :3] = R
    view[:3, 3] = -R @ eye_t
    return view


def intrinsics(width: int, height: int, fov_deg: float = 49.1) -> Tensor:  # [3, 3]
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def random_scene(n: int, sh_degree: int | None = None, seed: int = 0, spread: float = 0.5,
                 scale: float = 0.05) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = None if sh_degree is None else (sh_degree + 1) ** 2
    return {
        "means": (torch.rand(n, 3, generator=g) * 2 - 1) * spread,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.rand(n, 3, generator=g) * scale + 0.2 * scale,
        "opacities": torch.rand(n, generator=g) * 0.8 + 0.1,
        "colors": torch.rand(n, 3, generator=g) if k is None else torch.randn(n, k, 3, generator=g) * 0.3,
    }
