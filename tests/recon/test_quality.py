"""Metrics and the mesh renderer against analytic shapes (independent references)."""
import math

import numpy as np
import pytest

from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.recon.mesh import Mesh
from hi3d.engine.recon.mesh_render import AMBIENT, LIGHT_DIR, render_mesh
from hi3d.engine.recon.quality import (
    IOU_HALF_EXTENT,
    chamfer_distance,
    normalize,
    occupancy,
    volume_iou,
)
from hi3d.engine.recon.shapes import SHAPES


def _analytic_occupancy(shape, mesh, res=64):
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    centre, scale = (lo + hi) / 2, (hi - lo).max()
    ax = -IOU_HALF_EXTENT + (np.arange(res) + 0.5) * 2 * IOU_HALF_EXTENT / res
    pts = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    return (shape.sdf(pts * scale + centre) < 0).reshape(res, res, res)


@pytest.mark.parametrize("name", ["sphere", "torus", "composite"])
def test_occupancy_matches_the_analytic_sdf(gt_meshes, name):
    m = gt_meshes[name]
    occ = occupancy(normalize(m.vertices), m.faces, 64)
    ref = _analytic_occupancy(SHAPES[name], m)
    assert (occ & ref).sum() / (occ | ref).sum() > 0.985


def test_iou_of_two_shapes_matches_monte_carlo(gt_meshes):
    s, b = gt_meshes["sphere"], gt_meshes["box"]
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.55, 0.55, (400_000, 3))

    def inside(name, m):
        lo, hi = m.vertices.min(0), m.vertices.max(0)
        return SHAPES[name].sdf(pts * (hi - lo).max() + (lo + hi) / 2) < 0

    a, c = inside("sphere", s), inside("box", b)
    expected = (a & c).sum() / (a | c).sum()
    assert 0.3 < expected < 0.9  # the two shapes genuinely differ
    assert volume_iou(s, b) == pytest.approx(expected, abs=0.02)
    assert volume_iou(s, s) == pytest.approx(1.0)


def test_chamfer(gt_meshes):
    s = gt_meshes["sphere"]
    moved = Mesh(s.vertices * 1.7 + np.float32([0.2, -0.1, 0.3]), s.faces, s.colors)
    assert chamfer_distance(moved, s) < 0.004  # normalisation removes scale and offset
    assert chamfer_distance(moved, s, num_points=20000, frame="gt") > 0.2  # ... unless in the GT's frame
    assert volume_iou(moved, s, frame="gt") < 0.5
    # normalised sphere (diameter 1) vs normalised box (1 x 0.71 x 0.86): clearly apart
    box_vs_sphere = chamfer_distance(gt_meshes["box"], s, num_points=20000)
    assert 0.03 < box_vs_sphere < 0.2


def test_render_sphere_silhouette_and_shading(gt_meshes):
    m = gt_meshes["sphere"]  # radius 0.45 at the origin
    cams = hi3d_cameras(0.0, 96)
    rgba = render_mesh(m.vertices, m.faces, m.colors, cams)
    f = cams.K[0, 0].item()
    r_px = f * math.tan(math.asin(0.45 / 1.5))
    for img in rgba:
        assert img[..., 3].sum() == pytest.approx(math.pi * r_px**2, rel=0.03)
        assert np.allclose(img[0, 0], [1, 1, 1, 0])  # white, transparent background
    # centre pixel of view 0 sees the point (0.45, 0, 0) with normal +x
    n = np.array([1.0, 0.0, 0.0])
    shade = AMBIENT + (1 - AMBIENT) * max(0.0, n @ LIGHT_DIR / np.linalg.norm(LIGHT_DIR))
    albedo = SHAPES["sphere"].color(np.array([[0.45, 0.0, 0.0]]))[0]
    assert np.allclose(rgba[0, 47:49, 47:49, :3].mean((0, 1)), albedo * shade, atol=0.03)
