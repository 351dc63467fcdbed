"""`hi3d reconstruct` and `hi3d demo`: argument parsers and runners for engine/cli.py.

engine/cli.py wires them in with:

    from hi3d.engine.recon.cli import add_demo_parser, add_reconstruct_parser
    add_reconstruct_parser(subparsers)   # sets args.func = run_reconstruct
    add_demo_parser(subparsers)          # sets args.func = run_demo
    ...
    return args.func(args)               # exit status
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.recon import reconstruct
from hi3d.engine.recon.config import PRESETS, ReconConfig, recon_preset
from hi3d.engine.files import atomic_write, atomic_write_json
from hi3d.engine.images import png_bytes
from hi3d.engine.recon.mesh import MESH_FORMATS, save_mesh
from hi3d.engine.recon.mesh_render import render_mesh
from hi3d.engine.recon.quality import chamfer_distance, volume_iou
from hi3d.engine.recon.shapes import SHAPES
from hi3d.engine.recon.views import load_views

DEMO_SHAPE = "composite"
DEMO_ELEVATION = 10.0


def add_reconstruct_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("reconstruct", help="16 orbit views -> colored mesh (3DGS -> NeuS -> marching cubes)")
    p.add_argument("views_dir", help="folder with the 16 views (000.png ... 015.png, or any 16 images in sorted order)")
    p.add_argument("--out", required=True, help=f"output mesh, one of {', '.join(MESH_FORMATS)}")
    _add_common(p)
    p.add_argument("--save-gaussians", default=None, metavar="PLY", help="also write the fitted 3DGS as a standard .ply")
    p.set_defaults(func=run_reconstruct)
    return p


def add_demo_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="render the bundled toy object in Hi3D's 16 views and reconstruct it")
    p.add_argument("--out", required=True, help="output folder (views/, demo.glb, demo_metrics.json)")
    _add_common(p, elevation=DEMO_ELEVATION)
    p.set_defaults(func=run_demo)
    return p


def _add_common(p: argparse.ArgumentParser, elevation: float = 0.0) -> None:
    p.add_argument("--elevation", type=float, default=elevation, help=f"camera elevation in degrees (default {elevation:g})")
    p.add_argument("--preset", choices=PRESETS, default=None, help="default: gpu with CUDA, else cpu_small")
    p.add_argument("--interp", type=int, default=None, metavar="M", help="extra views rendered from the 3DGS (default 16; 0 skips the 3DGS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: the many small ops of the fits gain little from "
                        "more, and lose a lot when the cores are shared)")


def _config(args: argparse.Namespace) -> ReconConfig:
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    preset = args.preset or ("gpu" if torch.cuda.is_available() else "cpu_small")
    cfg = replace(recon_preset(preset), seed=args.seed)
    if args.interp is not None:
        if args.interp < 0:
            raise ValueError(f"--interp must be >= 0, got {args.interp}")
        cfg = replace(cfg, num_interp=args.interp)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"preset {preset!r} needs a CUDA device; use --preset cpu_small")
    return cfg


class _Bar:
    """tqdm bar per stage, with the current loss."""

    def __init__(self) -> None:
        self.stage, self.bar = None, None

    def __call__(self, stage: str, step: int, total: int, loss: float) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, tqdm(total=total, desc=stage, unit="step", file=sys.stderr)
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run(views: torch.Tensor, args: argparse.Namespace, cfg: ReconConfig, gaussians: str | None):
    bar = _Bar()
    try:
        return reconstruct(views, args.elevation, cfg, bar, gaussians_path=gaussians)
    finally:
        bar.close()


def run_reconstruct(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in MESH_FORMATS:
        raise ValueError(f"--out must end in one of {MESH_FORMATS}, got {out.name!r}")
    cfg = _config(args)
    views = load_views(args.views_dir)
    t0 = time.perf_counter()
    mesh = _run(views, args, cfg, args.save_gaussians)
    save_mesh(mesh, out)
    print(f"wrote {out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces ({time.perf_counter() - t0:.1f} s)")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    cfg = _config(args)
    shape = SHAPES[DEMO_SHAPE]
    gt = shape.mesh(160)
    cams = hi3d_cameras(args.elevation, max(2 * cfg.image_size, 256))
    rgba = render_mesh(gt.vertices, gt.faces, gt.colors, cams)
    for i, img in enumerate(rgba):
        path = out / "views" / f"{i:03d}.png"
        atomic_write(path, png_bytes(np.round(img[..., :3] * 255).astype(np.uint8)))
    print(f"rendered the 16 Hi3D views of the demo object ({DEMO_SHAPE}) into {out / 'views'}")
    views = load_views(out / "views")
    t0 = time.perf_counter()
    mesh = _run(views, args, cfg, None)
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
    print(f"wrote {out / 'demo.glb'} ({len(mesh.faces)} faces) in {seconds:.1f} s")
    print(f"vs ground truth: Chamfer {metrics['chamfer']:.4f}  volume IoU {metrics['volume_iou']:.4f} "
          f"(paper protocol; Hi3D on GSO: 0.0172 / 0.6631)")
    print(f"in the ground truth's frame: Chamfer {metrics['chamfer_gt_frame']:.4f}  "
          f"volume IoU {metrics['volume_iou_gt_frame']:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (python -m hi3d.engine.recon.cli ...) until engine/cli.py wires these in."""
    parser = argparse.ArgumentParser(prog="hi3d")
    sub = parser.add_subparsers(dest="command", required=True)
    add_reconstruct_parser(sub)
    add_demo_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
