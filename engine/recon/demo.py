"""The weight-free demo: render a known object in Hi3D's 16 views, reconstruct it, and
score the mesh against the object it came from."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.files import atomic_write_json
from hi3d.engine.images import write_view_pngs
from hi3d.engine.recon import Progress, reconstruct
from hi3d.engine.recon.config import ReconConfig
from hi3d.engine.recon.mesh import Mesh, save_mesh
from hi3d.engine.recon.mesh_render import render_mesh
from hi3d.engine.recon.quality import chamfer_distance, volume_iou
from hi3d.engine.recon.shapes import SHAPES
from hi3d.engine.recon.views import load_views

DEMO_SHAPE = "composite"
DEMO_ELEVATION = 10.0


def demo_object() -> Mesh:
    return SHAPES[DEMO_SHAPE].mesh(160)


def render_views(mesh: Mesh, elevation: float, cfg: ReconConfig) -> np.ndarray:  # [16, H, W, 3] uint8
    """`mesh` in Hi3D's 16 views at `elevation`, at twice the reconstruction's resolution
    (at least 256 px)."""
    rgba = render_mesh(mesh.vertices, mesh.faces, mesh.colors, hi3d_cameras(elevation, max(2 * cfg.image_size, 256)))
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


@dataclass(frozen=True)
class DemoResult:
    mesh_path: Path
    metrics: dict  # also written to demo_metrics.json


def run_demo(out: Path, cfg: ReconConfig, elevation: float, progress: Progress | None = None,
             log: Callable[[str], None] = print) -> DemoResult:
    """Writes OUT/views/000..015.png, OUT/demo.glb, OUT/ground_truth.glb, OUT/demo_metrics.json."""
    out = Path(out)
    gt = demo_object()
    write_view_pngs(render_views(gt, elevation, cfg), out / "views")
    log(f"rendered the 16 Hi3D views of the demo object ({DEMO_SHAPE}) into {out / 'views'}")
    views = load_views(out / "views")  # through the files, as `hi3d reconstruct` reads them
    t0 = time.perf_counter()
    mesh = reconstruct(views, elevation, cfg, progress)
    seconds = time.perf_counter() - t0
    save_mesh(mesh, out / "demo.glb")
    save_mesh(gt, out / "ground_truth.glb")
    metrics = {
        "chamfer": chamfer_distance(mesh, gt), "volume_iou": volume_iou(mesh, gt),
        "chamfer_gt_frame": chamfer_distance(mesh, gt, frame="gt"), "volume_iou_gt_frame": volume_iou(mesh, gt, frame="gt"),
        "seconds": seconds,
        "faces": int(len(mesh.faces)), "num_interp": cfg.num_interp, "image_size": cfg.image_size,
    }
    atomic_write_json(out / "demo_metrics.json", metrics)
    return DemoResult(out / "demo.glb", metrics)
