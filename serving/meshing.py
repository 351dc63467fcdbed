"""Served reconstruction: uint8 orbit views -> the .glb that `hi3d reconstruct` writes.

Shared by the `hi3d_reconstruct` and `hi3d_stream` models; plain Python (no Triton
import), so it is tested directly.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from hi3d.engine.cameras import HI3D_NUM_VIEWS
from hi3d.engine.errors import InvalidInput
from hi3d.engine.recon import Progress, ReconConfig, reconstruct
from hi3d.engine.recon.mesh import mesh_bytes

NO_SURFACE = "no surface found"


def views_from_uint8(views: np.ndarray) -> torch.Tensor:  # [16, H, W, 3] uint8 -> [16, 3, H, W] in [0, 1]
    if views.ndim != 4 or views.shape[0] != HI3D_NUM_VIEWS or views.shape[3] != 3:
        raise InvalidInput(f"views must be [{HI3D_NUM_VIEWS}, H, W, 3] uint8, got shape {list(views.shape)}")
    if views.shape[1] != views.shape[2]:
        raise InvalidInput(f"views must be square, got {views.shape[1]}x{views.shape[2]}")
    return torch.from_numpy(np.ascontiguousarray(views)).permute(0, 3, 1, 2).float() / 255.0


def recon_config(base: ReconConfig, seed: int, device: torch.device) -> ReconConfig:
    """The served preset with the request's seed, on this instance's device."""
    if not 0 <= seed < 2**63:
        raise InvalidInput(f"seed must be in [0, 2**63), got {seed}")
    return replace(base, seed=seed, device=str(device))


def mesh_glb(views: torch.Tensor, elevation: float, cfg: ReconConfig, progress: Progress | None = None) -> bytes:
    """Reconstruct and encode as .glb. Views in which no object can be found (noise, no
    white background, an empty SDF) are the caller's problem: InvalidInput "no surface found"."""
    if not (math.isfinite(elevation) and -90.0 <= elevation <= 90.0):
        raise InvalidInput(f"elevation must be in [-90, 90] degrees, got {elevation}")
    try:
        mesh = reconstruct(views, elevation, cfg, progress)
    except InvalidInput as e:
        raise InvalidInput(f"{NO_SURFACE}: {e}") from e
    if len(mesh.faces) == 0:
        raise InvalidInput(f"{NO_SURFACE}: the extracted mesh is empty")
    return mesh_bytes(mesh, ".glb")


def recon_steps(cfg: ReconConfig) -> int:
    """Optimisation steps `reconstruct` reports through its progress callback."""
    return (cfg.gaussians.steps if cfg.num_interp > 0 else 0) + cfg.neus.steps
