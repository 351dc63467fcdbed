"""Shared fixtures: ground-truth objects rendered in Hi3D's view layout (cached per session)."""
from __future__ import annotations

import pytest
import torch

from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.recon.mesh_render import render_mesh
from hi3d.engine.recon.shapes import SHAPES

ELEVATION = 10.0


@pytest.fixture(autouse=True)
def _one_thread():
    # On a shared 2-core machine, intra-op threads mostly wait for each other.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def gt_meshes():
    return {name: shape.mesh(96) for name, shape in SHAPES.items()}


@pytest.fixture(scope="session")
def sphere_views(gt_meshes):
    """16 RGBA views [16, 64, 64, 4] of the sphere at elevation 10 degrees."""
    m = gt_meshes["sphere"]
    return torch.from_numpy(render_mesh(m.vertices, m.faces, m.colors, hi3d_cameras(ELEVATION, 64)))
