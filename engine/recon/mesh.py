"""Mesh extraction (marching cubes on an SDF), cleaning and atomic export."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import trimesh
from PIL import Image
from skimage.measure import marching_cubes

from hi3d.engine.errors import InvalidInput
from hi3d.engine.files import atomic_write
from hi3d.engine.images import png_bytes
from hi3d.engine.recon.mesh_render import vertex_normals

MESH_FORMATS = (".glb", ".obj", ".ply")


@dataclass(frozen=True)
class TextureAtlas:
    """A UV layout of a Mesh and its color texture.

    UV corners are separate from the mesh's vertices (a vertex on a chart seam has one UV
    per chart), so the mesh itself stays closed for the quality metrics.
    """

    image: np.ndarray  # [S, S, 3] uint8; row 0 is v = 1 (the OBJ / trimesh convention, v up)
    uv: np.ndarray  # [U, 2] float32 in [0, 1]
    uv_faces: np.ndarray  # [F, 3] int64 into uv, face for face with Mesh.faces
    uv_vertex: np.ndarray  # [U] int64: the mesh vertex each UV corner belongs to


@dataclass
class Mesh:
    """A triangle mesh with per-vertex colors (and optionally a texture), in the world frame
    of engine.cameras."""

    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int64, counter-clockwise seen from outside
    colors: np.ndarray  # [V, 3] float32 in [0, 1]
    texture: TextureAtlas | None = None

    def to_trimesh(self, textured: bool = True) -> trimesh.Trimesh:
        if textured and self.texture is not None:
            tex = self.texture
            material = trimesh.visual.material.PBRMaterial(
                baseColorTexture=Image.fromarray(tex.image), metallicFactor=0.0, roughnessFactor=1.0
            )
            visual = trimesh.visual.TextureVisuals(uv=tex.uv, material=material)
            return trimesh.Trimesh(self.vertices[tex.uv_vertex], tex.uv_faces, visual=visual, process=False)
        rgba = np.concatenate([np.round(np.clip(self.colors, 0, 1) * 255), np.full((len(self.colors), 1), 255)], 1)
        return trimesh.Trimesh(self.vertices, self.faces, vertex_colors=rgba.astype(np.uint8), process=False)


def grid_points(resolution: int, bound: float) -> np.ndarray:  # [R^3, 3], x slowest
    axis = np.linspace(-bound, bound, resolution)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def extract_mesh(
    sdf_fn: Callable[[np.ndarray], np.ndarray],  # [N, 3] -> [N], negative inside
    color_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],  # points, normals [N, 3] -> [N, 3]
    resolution: int,
    bound: float = 1.0,
    chunk: int = 65536,
) -> Mesh:
    """Marching cubes of the zero level set inside [-bound, bound]^3, then vertex colors.

    The grid's outer layer is forced outside so that the surface is always closed.
    """
    pts = grid_points(resolution, bound)
    sdf = np.concatenate([np.asarray(sdf_fn(pts[i : i + chunk]), np.float32) for i in range(0, len(pts), chunk)])
    sdf = sdf.reshape(resolution, resolution, resolution)
    sdf[[0, -1]] = sdf[:, [0, -1]] = sdf[:, :, [0, -1]] = np.abs(sdf).max() + 1.0
    if not (sdf.min() < 0.0 < sdf.max()):
        raise InvalidInput("the SDF has no zero crossing inside the bounds: nothing to extract")
    h = 2.0 * bound / (resolution - 1)
    verts, faces, _, _ = marching_cubes(sdf, level=0.0, spacing=(h, h, h))
    verts = (verts - bound).astype(np.float32)
    mesh = clean_mesh(Mesh(verts, faces.astype(np.int64), np.zeros_like(verts)))
    normals = vertex_normals(mesh.vertices.astype(np.float64), mesh.faces).astype(np.float32)
    colors = np.concatenate(
        [np.asarray(color_fn(mesh.vertices[i : i + chunk], normals[i : i + chunk])) for i in range(0, len(mesh.vertices), chunk)]
    )
    return Mesh(mesh.vertices, mesh.faces, np.clip(colors, 0.0, 1.0).astype(np.float32))


def clean_mesh(mesh: Mesh) -> Mesh:
    """Keep the largest connected component, drop unused vertices, orient faces outward."""
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    labels = trimesh.graph.connected_component_labels(tm.face_adjacency, node_count=len(tm.faces))
    keep = labels == np.bincount(labels).argmax()
    used = np.unique(mesh.faces[keep])
    remap = np.full(len(mesh.vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    faces = remap[mesh.faces[keep]]
    vertices, colors = mesh.vertices[used], mesh.colors[used]
    if signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1].copy()
    return Mesh(vertices, faces, colors)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def save_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Export as .glb, .obj or .ply (chosen by the suffix).

    A textured mesh goes to .glb with its texture as the material's baseColorTexture, and to
    .obj with a .mtl and a .png beside it (same stem); .ply has no texture: vertex colors.
    """
    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise InvalidInput(f"unsupported mesh format {path.suffix!r} for {path}; use one of {MESH_FORMATS}")
    suffix = path.suffix.lower()
    if suffix == ".obj" and mesh.texture is not None:
        tm = mesh.to_trimesh()
        mtl_name, texture_name = f"{path.stem}.mtl", f"{path.stem}.png"
        text, files = trimesh.exchange.obj.export_obj(tm, return_texture=True, mtl_name=mtl_name)
        # trimesh names the texture after the material; ours is named after the mesh
        old = next(name for name in files if name.lower().endswith(".png"))
        mtl = files[mtl_name].decode().replace(old, texture_name)
        atomic_write(path.with_name(texture_name), png_bytes(mesh.texture.image))
        atomic_write(path.with_name(mtl_name), mtl.encode())
        atomic_write(path, text.encode())
        return path
    atomic_write(path, mesh_bytes(mesh, suffix))
    return path


def mesh_bytes(mesh: Mesh, suffix: str = ".glb") -> bytes:
    """The one-file formats as `save_mesh` writes them, as bytes (the server sends them):
    .glb with its texture embedded, .ply with vertex colors."""
    suffix = suffix.lower()
    data = mesh.to_trimesh(textured=suffix != ".ply").export(file_type=suffix.lstrip("."))
    return data if isinstance(data, bytes) else data.encode()


def load_mesh(path: str | os.PathLike) -> Mesh:
    tm = trimesh.load(path, force="mesh", process=False)
    visual = tm.visual.to_color() if hasattr(tm.visual, "to_color") else tm.visual
    colors = np.asarray(visual.vertex_colors, np.float32)[:, :3] / 255.0
    return Mesh(np.asarray(tm.vertices, np.float32), np.asarray(tm.faces, np.int64), colors)
