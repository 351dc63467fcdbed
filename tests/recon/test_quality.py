"""Metrics and the mesh renderer against analytic shapes (independent references)."""
import math

import numpy as np
import pytest
import trimesh

from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.recon.mesh import Mesh
from hi3d.engine.recon.mesh_render import AMBIENT, LIGHT_DIR, render_mesh
from hi3d.engine.recon.quality import (
    IOU_HALF_EXTENT,
    chamfer_distance,
    genus,
    iou_floor,
    normal_consistency,
    normalize,
    occupancy,
    volume_iou,
)
from hi3d.engine.recon.shapes import SHAPES, THIN_SHAPES, Part, Shape


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


def _mesh(tm: trimesh.Trimesh) -> Mesh:
    v = np.asarray(tm.vertices, np.float32)
    return Mesh(v, np.asarray(tm.faces, np.int64), np.zeros_like(v))


def test_genus_of_trimesh_primitives():
    assert genus(_mesh(trimesh.creation.icosphere(3))) == 0
    assert genus(_mesh(trimesh.creation.torus(0.4, 0.1))) == 1
    # two overlapping tori, meshed by marching cubes: a double torus (genus 2)
    ring = (0.2, 0.06)
    double = Shape("double", (Part("torus", (-0.18, 0.0, 0.0), ring, (1, 1, 1)), Part("torus", (0.18, 0.0, 0.0), ring, (1, 1, 1))))
    assert genus(double.mesh(64)) == 2


def test_genus_of_the_largest_component_only():
    big, small = trimesh.creation.icosphere(4), trimesh.creation.torus(0.2, 0.05)  # 5120 vs 2048 faces
    small.apply_translation([3.0, 0.0, 0.0])
    assert genus(_mesh(trimesh.util.concatenate([big, small]))) == 0


@pytest.mark.parametrize("name", ["torus", "composite", *THIN_SHAPES])
def test_ground_truth_meshes_have_their_shapes_genus(gt_meshes, name):
    assert genus(gt_meshes[name]) == SHAPES[name].genus


def _square(tilt: float) -> Mesh:  # the square [-1, 1]^2 of the z = 0 plane, turned `tilt` rad about x
    c, t = np.cos(tilt), np.sin(tilt)
    v = np.float32([[x, y * c, y * t] for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    return Mesh(v, np.int64([[0, 1, 2], [0, 2, 3]]), np.zeros_like(v))


def test_normal_consistency():
    sphere = _mesh(trimesh.creation.icosphere(4))
    assert normal_consistency(sphere, sphere, 20000) > 0.99  # the nearest sample lies on the same face or a neighbour
    flipped = Mesh(sphere.vertices, sphere.faces[:, ::-1].copy(), sphere.colors)
    assert normal_consistency(flipped, sphere, 20000) > 0.99  # unsigned: inward-wound faces score the same
    # Two squares 25 degrees apart: every nearest neighbour is on the other square, so
    # every pair's |cos| is cos 25 deg exactly.
    tilt = np.radians(25.0)
    assert normal_consistency(_square(tilt), _square(0.0), 5000, frame="gt") == pytest.approx(np.cos(tilt), abs=1e-5)
    assert normal_consistency(_square(0.0), _square(0.0), 5000) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["box", *THIN_SHAPES])
def test_iou_floor_of_the_ground_truth_meshes(gt_meshes, name):
    m, sdf = gt_meshes[name], SHAPES[name].sdf
    floor = iou_floor(sdf, m)
    assert 0.97 <= floor <= 1.0
    # the SDF moved by one voxel of the IoU grid (1.1 / 64 of the longest side) along x
    # (the disc: along its thin axis): a thin part loses much of its overlap
    voxel = np.float64([1.1 / 64 * np.ptp(m.vertices, 0).max(), 0.0, 0.0])
    assert iou_floor(lambda p: sdf(p + voxel), m) < floor - 0.02
