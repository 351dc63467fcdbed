"""Shared fixtures: ground-truth objects rendered in Hi3D's view layout (cached per session)."""
from __future__ import annotations

import pytest
import torch

from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.recon.mesh_render import render_mesh
from hi3d.engine.recon.shapes import SHAPES

ELEVATION = 10.0


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every reconstruction test on one thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def gt_meshes():
    return {name: shape.mesh(96) for name, shape in SHAPES.items()}


@pytest.fixture(scope="session")
def sphere_views(gt_meshes):
    """16 RGBA views [16, 64, 64, 4] of the sphere at elevation 10 degrees."""
    m = gt_meshes["sphere"]
    return torch.from_numpy(render_mesh(m.vertices, m.faces, m.colors, hi3d_cameras(ELEVATION, 64)))
