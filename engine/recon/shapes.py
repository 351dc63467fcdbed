"""Procedural ground-truth objects: analytic SDFs with colors, meshed by marching cubes.

They feed the quality harness, the tests and the weight-free demo. Every object fits in a
sphere of radius ~0.6, which Hi3D's cameras (radius 1.5, FoV 49.1 deg) see whole. Each
knows its genus (the number of handles of its surface), which the reconstruction must keep.

THIN_SHAPES have parts a few percent of their size thick (a table's top, a fin, a mug's
handle, a coin): the ones a reconstruction tears or swells. They carry a 3D color pattern,
so that flat faces have texture to match between views, as real objects' do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hi3d.engine.recon.mesh import Mesh, extract_mesh


@dataclass(frozen=True)
class Part:
    kind: str  # "sphere" | "box" | "torus" | "cylinder"
    center: tuple[float, float, float]
    size: tuple[float, ...]  # sphere (r,), box half-extents (x, y, z), torus (R, r), cylinder (r, half-height)
    color: tuple[float, float, float]
    axis: int = 2  # torus / cylinder axis: 0 = x, 1 = y, 2 = z


@dataclass(frozen=True)
class Shape:
    """A union of parts; each surface point takes the color of the part it lies on."""

    name: str
    parts: tuple[Part, ...]
    genus: int = 0  # of the union's surface: 0 sphere-like, 1 one handle (a torus, a mug)
    pattern: str = "stripes"  # "stripes" along z | "checker": a 3D pattern, flat faces vary too

    def sdf(self, points: np.ndarray) -> np.ndarray:  # [N, 3] -> [N]
        return self._part_sdfs(points).min(0)

    def color(self, points: np.ndarray, normals: np.ndarray | None = None) -> np.ndarray:  # [N, 3]
        nearest = self._part_sdfs(points).argmin(0)
        colors = np.array([p.color for p in self.parts], np.float32)[nearest]
        # A soft stripe pattern along z gives texture that a flat color would not test.
        wave = np.cos(points[:, 2] * 24.0)
        if self.pattern == "checker":  # ... and along x and y, so a horizontal face has texture
            wave = wave * np.cos(points[:, 0] * 24.0) * np.cos(points[:, 1] * 24.0)
        return colors * (0.85 + 0.15 * wave)[:, None]

    def mesh(self, resolution: int = 128) -> Mesh:
        return extract_mesh(self.sdf, self.color, resolution, bound=0.8)

    def _part_sdfs(self, points: np.ndarray) -> np.ndarray:  # [P, N]
        return np.stack([_part_sdf(p, np.asarray(points, np.float64) - p.center) for p in self.parts])


def _part_sdf(part: Part, q: np.ndarray) -> np.ndarray:
    if part.kind == "sphere":
        return np.linalg.norm(q, axis=1) - part.size[0]
    if part.kind == "box":
        d = np.abs(q) - np.asarray(part.size)
        return np.linalg.norm(np.maximum(d, 0.0), axis=1) + np.minimum(d.max(1), 0.0)
    axial = q[:, part.axis]
    radial = np.linalg.norm(np.delete(q, part.axis, axis=1), axis=1)
    if part.kind == "torus":
        return np.hypot(radial - part.size[0], axial) - part.size[1]
    if part.kind == "cylinder":
        d = np.stack([radial - part.size[0], np.abs(axial) - part.size[1]], 1)
        return np.linalg.norm(np.maximum(d, 0.0), axis=1) + np.minimum(d.max(1), 0.0)
    raise ValueError(f"unknown part kind {part.kind!r}")


SHAPES: dict[str, Shape] = {
    "sphere": Shape("sphere", (Part("sphere", (0.0, 0.0, 0.0), (0.45,), (0.85, 0.3, 0.25)),)),
    "box": Shape("box", (Part("box", (0.0, 0.0, 0.0), (0.35, 0.25, 0.3), (0.25, 0.45, 0.85)),)),
    "torus": Shape("torus", (Part("torus", (0.0, 0.0, 0.0), (0.38, 0.14), (0.9, 0.7, 0.2), axis=1),), genus=1),
    # The bundled demo object: a small toy (base, body, head, ring handle).
    "composite": Shape(
        "composite",
        (
            Part("box", (0.0, 0.0, -0.32), (0.3, 0.3, 0.08), (0.3, 0.35, 0.8)),
            Part("cylinder", (0.0, 0.0, -0.08), (0.16, 0.18), (0.2, 0.7, 0.3)),
            Part("sphere", (0.0, 0.0, 0.24), (0.2,), (0.9, 0.35, 0.25)),
            Part("torus", (0.0, 0.2, -0.02), (0.1, 0.04), (0.95, 0.8, 0.2), axis=0),
        ),
        genus=1,
    ),
    # A table: a top 0.04 thick (4.4 % of its 0.9 width) on four legs 0.08 across.
    "table": Shape(
        "table",
        (Part("box", (0.0, 0.0, 0.17), (0.45, 0.3, 0.02), (0.75, 0.5, 0.3)),)
        + tuple(Part("cylinder", (x, y, -0.09), (0.04, 0.26), (0.35, 0.25, 0.2)) for x in (-0.38, 0.38) for y in (-0.23, 0.23)),
        pattern="checker",
    ),
    # A rocket: body and nose, four fins 0.03 thick (4.2 % of its 0.72 height).
    "rocket": Shape(
        "rocket",
        (Part("cylinder", (0.0, 0.0, -0.05), (0.12, 0.3), (0.85, 0.85, 0.9)),
         Part("sphere", (0.0, 0.0, 0.25), (0.12,), (0.9, 0.3, 0.25)),
         Part("box", (0.2, 0.0, -0.25), (0.1, 0.015, 0.1), (0.25, 0.35, 0.85)),
         Part("box", (-0.2, 0.0, -0.25), (0.1, 0.015, 0.1), (0.25, 0.35, 0.85)),
         Part("box", (0.0, 0.2, -0.25), (0.015, 0.1, 0.1), (0.25, 0.35, 0.85)),
         Part("box", (0.0, -0.2, -0.25), (0.015, 0.1, 0.1), (0.25, 0.35, 0.85))),
        pattern="checker",
    ),
    # A mug: a solid body and a handle 0.07 thick whose hole (0.17 x 0.23) the side views see through.
    "mug": Shape(
        "mug",
        (Part("cylinder", (0.0, 0.0, 0.0), (0.25, 0.28), (0.3, 0.55, 0.8)),
         Part("torus", (0.3, 0.0, 0.0), (0.15, 0.035), (0.9, 0.75, 0.25), axis=1)),
        genus=1,
        pattern="checker",
    ),
    # A coin standing on its edge: 0.9 across, 0.04 thick.
    "disc": Shape("disc", (Part("cylinder", (0.0, 0.0, 0.0), (0.45, 0.02), (0.8, 0.35, 0.6), axis=0),), pattern="checker"),
}

THIN_SHAPES = ("table", "rocket", "mug", "disc")
