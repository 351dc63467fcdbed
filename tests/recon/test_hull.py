"""Visual hull, its carving by exact depth and its signed distance against analytic references
(a sphere, the rocket's SDF)."""
import numpy as np
import torch

from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.recon.hull import carve_by_depth, hull_mesh, occupancy_mesh, signed_distance, visual_hull
from hi3d.engine.recon.mesh import grid_points
from hi3d.engine.recon.mesh_render import depth_maps, render_mesh
from hi3d.engine.recon.quality import genus, volume_iou
from hi3d.engine.recon.shapes import SHAPES

ELEVATION = 10.0  # the views of conftest.py
RES = 64
H = 2.0 / (RES - 1)  # grid step over [-1, 1]


def test_hull_of_the_sphere_views_holds_the_sphere_and_little_more(sphere_views):
    # The sphere (radius 0.45) seen by 16 views at elevation 10: the hull is the intersection
    # of 16 cones tangent to it, within ~3 % of the radius around the equator (a 16-gon:
    # 1 / cos(pi / 16) = 1.02) and at the poles (the cones' tangent lines, ~1.02 at 10 deg).
    occ = visual_hull(sphere_views[..., 3], hi3d_cameras(ELEVATION, sphere_views.shape[1]), RES)
    r = np.linalg.norm(grid_points(RES, 1.0), axis=1).reshape(occ.shape)
    assert occ[r < 0.45 - H].all()
    assert not occ[r > 0.45 * 1.05 + H].any()


def test_hull_is_empty_where_one_mask_is():
    masks = torch.ones(16, 32, 32)
    masks[3] = 0.0  # one view sees nothing: nothing can be there
    assert not visual_hull(masks, hi3d_cameras(0.0, 32), 16).any()


def test_signed_distance_of_a_voxel_ball_is_the_balls():
    p = grid_points(RES, 1.0)
    r = np.linalg.norm(p, axis=1).reshape(RES, RES, RES)
    sd = signed_distance(r < 0.5)
    band = np.abs(r - 0.5) < 0.3
    assert np.abs(sd - (r - 0.5))[band].max() < H  # voxelisation moves the surface by < 1 step
    assert (sd[r < 0.5 - H] < 0).all() and (sd[r > 0.5 + H] > 0).all()


def test_hull_mesh_of_the_sphere_views_is_a_closed_slightly_larger_sphere(sphere_views, gt_meshes):
    mesh = hull_mesh(sphere_views[..., 3], hi3d_cameras(ELEVATION, sphere_views.shape[1]), RES)
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert genus(mesh) == 0 and r.min() > 0.45 - 2 * H and r.max() < 0.45 * 1.05 + 2 * H  # see the test above
    assert volume_iou(mesh, gt_meshes["sphere"], frame="gt") > 0.85  # 0.45^3 / (0.45 * 1.03)^3 = 0.92, less voxels


def test_depth_carving_keeps_the_rocket_and_empties_the_corners_between_its_fins(gt_meshes):
    # The rocket's four fins make concave corners that every silhouette fills, so the hull holds
    # them; each is seen head-on by the view on its bisector, in front of the body, so the exact
    # depth carves it. Carving must never remove a point of the object (its analytic SDF), and the
    # carved hull must be a closer, still closed, rocket.
    shape, gt = SHAPES["rocket"], gt_meshes["rocket"]
    cams = hi3d_cameras(ELEVATION, 96)
    masks = torch.from_numpy(render_mesh(gt.vertices, gt.faces, gt.colors, cams)[..., 3])
    depth = depth_maps(gt.vertices, gt.faces, cams)
    hull = visual_hull(masks, cams, RES)
    carved = carve_by_depth(hull, depth, cams)
    p = grid_points(RES, 1.0)
    sdf = shape.sdf(p).reshape(hull.shape)
    assert hull[sdf < -H].all() and not (hull & ~carved)[sdf < -H].any()  # nothing inside is carved
    corner = np.abs(np.abs(p[:, 0]) - np.abs(p[:, 1])).reshape(hull.shape) < H
    corner &= sdf > 2 * H  # outside the object, near the diagonals between the fins
    assert carved[corner].sum() < 0.5 * hull[corner].sum()  # measured: 0 of 28 left
    hull_iou = volume_iou(hull_mesh(masks, cams, RES), gt, frame="gt")
    carved_mesh = occupancy_mesh(carved)
    assert genus(carved_mesh) == shape.genus
    assert volume_iou(carved_mesh, gt, frame="gt") > hull_iou + 0.1  # measured 0.63 -> 0.78
