"""Mesh metrics against hand-computed values: offset spheres have an analytic Chamfer distance."""
import json

import numpy as np
import pytest
import trimesh
from scipy.integrate import quad

from hi3d.bench import mesh_metrics
from hi3d.engine.recon.mesh import Mesh
from hi3d.engine.recon.quality import chamfer_from, f_score_from, surface_distances


def _sphere(radius=1.0, centre=(0.0, 0.0, 0.0)) -> Mesh:
    s = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    v = np.asarray(s.vertices, np.float32) + np.float32(centre)
    return Mesh(v, np.asarray(s.faces, np.int64), np.ones_like(v))


def test_chamfer_of_two_offset_spheres():
    r, d = 0.5, 0.2  # the ground truth's box normalisation keeps these: its diameter is 1
    a, b = _sphere(r, (d, 0.0, 0.0)), _sphere(r)
    # A point at height t (uniform in [-1, 1] on a sphere, Archimedes) lies
    # |sqrt(r^2 + d^2 + 2 r d t) - r| from the other sphere; both directions are alike.
    expected = quad(lambda t: abs(np.sqrt(r * r + d * d + 2 * r * d * t) - r) / 2.0, -1.0, 1.0)[0]
    d_ab, d_ba = surface_distances(a, b, num_points=50_000, frame="gt")
    assert chamfer_from(d_ab, d_ba) == pytest.approx(expected, rel=0.05)


def test_f_score_of_concentric_spheres():
    a, b = _sphere(0.45), _sphere(0.5)  # 0.05 apart everywhere in the ground truth's frame (diameter 1)
    d_ab, d_ba = surface_distances(a, b, num_points=20_000, frame="gt")
    assert chamfer_from(d_ab, d_ba) == pytest.approx(0.05, rel=0.05)
    assert f_score_from(d_ab, d_ba, 0.08) == pytest.approx(1.0)
    assert f_score_from(d_ab, d_ba, 0.04) == pytest.approx(0.0)


def _export(mesh: Mesh, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(path)


def test_cli_scores_a_folder_with_the_ground_truth_self_score(tmp_path, capsys):
    gt = _sphere(1.0)
    _export(gt, tmp_path / "gt" / "ball.obj")
    _export(Mesh(gt.vertices * np.float32([1, 0.6, 1]), gt.faces, gt.colors), tmp_path / "gt" / "egg.obj")
    _export(gt, tmp_path / "pred" / "ball" / "mesh.glb")
    # the egg is squashed along its file's y (up) axis, which becomes z: the predicted egg is
    # squashed along z, so it matches only if the up axis is converted
    squashed = Mesh(gt.vertices * np.float32([1, 1, 0.6]), gt.faces, gt.colors)
    _export(squashed, tmp_path / "pred" / "egg.ply")
    out = tmp_path / "m.json"
    argv = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--points", "5000", "--out", str(out)]
    assert mesh_metrics.main(argv) == 0
    result = json.loads(out.read_text())
    rows = {r["object"]: r for r in result["objects"]}
    for row in rows.values():
        assert row["chamfer"] == pytest.approx(row["gt_self_chamfer"], rel=0.3)  # same shape: the sampling floor
        assert row["volume_iou"] > 0.97 and row["gt_self_volume_iou"] == pytest.approx(1.0)
    assert result["chamfer"] == pytest.approx(np.mean([r["chamfer"] for r in rows.values()]))
    assert "mean" in capsys.readouterr().out
    assert mesh_metrics.main(argv + ["--gt-up", "z"]) == 0  # no conversion: the egg lies the wrong way
    assert json.loads(out.read_text())["volume_iou"] < 0.9


@pytest.mark.parametrize("argv, named", [
    (["--pred", "P", "--gt", "G"], "--pred"),
    (["--pred", "G", "--gt", "P"], "--gt"),
    (["--pred", "G", "--gt", "G", "--fscore-threshold", "0"], "--fscore-threshold"),
    (["--pred", "G", "--gt", "G", "--points", "0"], "--points"),
])
def test_bad_arguments_exit_2_naming_the_argument(tmp_path, capsys, argv, named):
    (tmp_path / "G").mkdir()
    assert mesh_metrics.main([str(tmp_path / a) if a in ("P", "G") else a for a in argv]) == 2
    assert named in capsys.readouterr().err
