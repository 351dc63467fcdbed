"""Marching-cubes extraction, cleaning and export."""
import math

import numpy as np
import pytest
import trimesh

from hi3d.engine.recon.mesh import (
    Mesh,
    clean_mesh,
    extract_mesh,
    load_mesh,
    save_mesh,
    signed_volume,
)
from hi3d.engine.recon.shapes import SHAPES


def test_extract_sphere_is_closed_outward_and_colored():
    shape = SHAPES["sphere"]
    m = extract_mesh(shape.sdf, shape.color, resolution=64, bound=0.8)
    tm = trimesh.Trimesh(m.vertices, m.faces, process=False)
    assert tm.is_watertight
    assert signed_volume(m.vertices, m.faces) == pytest.approx(4 / 3 * math.pi * 0.45**3, rel=0.02)
    assert np.allclose(np.linalg.norm(m.vertices, axis=1), 0.45, atol=0.01)
    assert np.allclose(m.colors, shape.color(m.vertices), atol=1e-6)


def test_clean_keeps_the_largest_component_and_flips_inside_out_meshes():
    big = SHAPES["sphere"].mesh(48)
    small = Mesh(big.vertices * 0.2 + 0.6, big.faces, big.colors)
    both = Mesh(np.concatenate([small.vertices, big.vertices]),
                np.concatenate([small.faces, big.faces + len(small.vertices)])[:, ::-1].copy(),
                np.concatenate([small.colors, big.colors]))
    out = clean_mesh(both)
    assert len(out.faces) == len(big.faces) and len(out.vertices) == len(big.vertices)
    assert signed_volume(out.vertices, out.faces) > 0


def test_empty_sdf_is_an_error():
    with pytest.raises(ValueError, match="no zero crossing"):
        extract_mesh(lambda p: np.ones(len(p)), lambda p, n: np.zeros((len(p), 3)), 16)


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_export_roundtrip_with_vertex_colors(tmp_path, suffix):
    m = SHAPES["composite"].mesh(48)
    path = save_mesh(m, tmp_path / f"mesh{suffix}")
    back = load_mesh(path)
    assert len(back.faces) == len(m.faces)
    assert trimesh.Trimesh(back.vertices, back.faces).is_watertight
    # colors survive (8-bit), matched by position since loaders may reorder vertices
    assert len(back.vertices) == len(m.vertices)
    order, order_back = np.lexsort(m.vertices.T), np.lexsort(back.vertices.T)
    assert np.allclose(back.vertices[order_back], m.vertices[order], atol=1e-5)
    assert np.allclose(back.colors[order_back], m.colors[order], atol=1 / 255 + 1e-6)
    assert back.colors.std() > 0.05  # more than one color
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind


def test_glb_loads_in_trimesh_with_vertex_colors(tmp_path):
    m = SHAPES["sphere"].mesh(32)
    save_mesh(m, tmp_path / "a.glb")
    scene_mesh = trimesh.load(tmp_path / "a.glb", force="mesh")
    assert scene_mesh.visual.kind == "vertex"
    assert np.allclose(scene_mesh.visual.vertex_colors[:, :3] / 255.0, m.colors, atol=1 / 255 + 1e-6)


def test_bad_format_leaves_existing_file(tmp_path):
    target = tmp_path / "mesh.stl"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match="unsupported mesh format"):
        save_mesh(SHAPES["sphere"].mesh(16), target)
    assert target.read_bytes() == b"old"
