"""Reconstruction quality on procedural ground truth, thin parts included.

Each shape of engine.recon.shapes (by default the thin-part ones, THIN_SHAPES, and the four
compact ones) is rendered in Hi3D's 16-view layout (radius 1.5, one elevation, FoV 49.1
deg, white background) at twice the fit's image size, reconstructed with M = 0 and M = 16
interpolated views, and compared with its ground-truth mesh (engine.recon.quality): Chamfer
distance and volume IoU in the paper's normalisation (and in the ground truth's frame),
the IoU's floor (the ground-truth mesh against its analytic SDF on the same grid), normal
consistency, the genus of the reconstruction against the shape's, and the PSNR of the
baked texture (and of the vertex colors) rendered at held-out azimuths. Beside them, the IoU
and genus of the views' visual hull (at HULL_RESOLUTION^3): what the silhouettes alone give,
which the reconstruction has to beat with the colors where a shape is concave or unseen
(under a table's top from above, between a rocket's fins), and the same hull carved by the
views' exact depth: the most that any method fitting the 16 views can recover, the rest being
space no view sees. Prints a table, writes one JSON.

    python -m hi3d.bench.recon_quality                          # cpu_small, 8 shapes, M = 0 and 16
    python -m hi3d.bench.recon_quality --shapes table disc --interp 16 --out table_disc.json
    python -m hi3d.bench.recon_quality --quick                  # test preset, table + mug, 48 px: minutes
    python -m hi3d.bench.recon_quality --preset gpu --sizes 512 1024
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace

import torch

from hi3d.bench.common import cli_main
from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.files import atomic_write_json
from hi3d.engine.recon import reconstruct
from hi3d.engine.recon.config import PRESETS, recon_preset
from hi3d.engine.recon.hull import carve_by_depth, occupancy_mesh, visual_hull
from hi3d.engine.recon.mesh_render import depth_maps, render_mesh
from hi3d.engine.recon.quality import (
    HELD_OUT_AZIMUTHS,
    IOU_RESOLUTION,
    chamfer_distance,
    genus,
    held_out_psnr,
    iou_floor,
    normal_consistency,
    volume_iou,
)
from hi3d.engine.recon.shapes import SHAPES, THIN_SHAPES

PAPER = {"M=0": (0.0186, 0.6375), "M=16": (0.0172, 0.6631)}  # Hi3D Table 4, GSO
MIN_IOU_FLOOR = 0.97  # below this the IoU grid is too coarse for the shape: say so
GT_RESOLUTION = 160  # marching-cubes grid of the ground-truth meshes over [-0.8, 0.8]^3
HULL_RESOLUTION = 192  # the visual hull's grid over [-1, 1]^3: finer than a 128 px view's pixel


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="test preset, table + mug, 48 px")
    p.add_argument("--preset", choices=PRESETS, default=None)
    p.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=None)
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="image sizes the fits run at (default: the preset's)")
    p.add_argument("--interp", nargs="+", type=int, default=[0, 16], help="values of M")
    p.add_argument("--elevation", type=float, default=10.0)
    p.add_argument("--iou-resolution", type=int, default=IOU_RESOLUTION)
    p.add_argument("--texture-size", type=int, default=None, help="atlas size (default: the preset's)")
    p.add_argument("--thin-part-options", action="store_true",
                   help="NeuS's visual-hull start (128^3) and curvature term (2e-3), off in the presets")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results/recon_quality.json")
    return p


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    preset = args.preset or ("test" if args.quick else "cpu_small")
    shapes = args.shapes or (["table", "mug"] if args.quick else [*THIN_SHAPES, "sphere", "box", "torus", "composite"])
    base = recon_preset(preset)
    if args.thin_part_options:
        base = replace(base, neus=replace(base.neus, hull_resolution=128, curvature_weight=2e-3))
    if args.texture_size is not None:
        base = replace(base, texture=replace(base.texture, size=args.texture_size))
    sizes = args.sizes or [base.image_size]

    rows = []
    print(f"preset {preset}, elevation {args.elevation:g} deg, load average {_load()}; paper (GSO): " +
          ", ".join(f"{k}: CD {v[0]} IoU {v[1]}" for k, v in PAPER.items()))
    print("chamfer / IoU: paper protocol (each mesh normalised by its own box); *_gt: both in the GT's box; "
          f"floor: the GT mesh vs its analytic SDF on the {args.iou_resolution}^3 IoU grid; NC: normal consistency")
    print(f"psnr_tex / psnr_vc: texture / vertex colors rendered at azimuths {HELD_OUT_AZIMUTHS}, vs the ground truth")
    print(f"{'shape':<10} {'size':>4} {'M':>3} {'chamfer':>8} {'IoU':>6} {'floor':>6} {'iou_gt':>6} {'NC':>6} "
          f"{'genus':>5} {'psnr_tex':>8} {'psnr_vc':>7} {'faces':>6} {'seconds':>7}")
    for name in shapes:
        shape = SHAPES[name]
        gt = shape.mesh(GT_RESOLUTION)
        floor = iou_floor(shape.sdf, gt, args.iou_resolution)
        for size in sizes:
            cams = hi3d_cameras(args.elevation, 2 * size)
            views = render_mesh(gt.vertices, gt.faces, gt.colors, cams)
            occupancy = visual_hull(torch.from_numpy(views[..., 3]), cams, HULL_RESOLUTION)
            hull = occupancy_mesh(occupancy)
            hull_iou, hull_genus = volume_iou(hull, gt, args.iou_resolution), genus(hull)
            carved = occupancy_mesh(carve_by_depth(occupancy, depth_maps(gt.vertices, gt.faces, cams), cams))
            carved_iou, carved_genus = volume_iou(carved, gt, args.iou_resolution), genus(carved)
            print(f"{name:<10} {size:>4} visual hull: IoU {hull_iou:.3f}, genus {hull_genus}/{shape.genus}; "
                  f"carved by the exact depth: IoU {carved_iou:.3f}, genus {carved_genus}", flush=True)
            views = torch.from_numpy(views[..., :3]).permute(0, 3, 1, 2)
            for m in args.interp:
                cfg = replace(base, image_size=size, gs_image_size=min(base.gs_image_size, size), num_interp=m)
                load_before = _load()
                t0 = time.perf_counter()
                mesh = reconstruct(views, args.elevation, cfg)
                seconds = time.perf_counter() - t0
                view_psnr = held_out_psnr(mesh, gt, args.elevation, size)
                row = {"shape": name, "image_size": size, "M": m, "chamfer": chamfer_distance(mesh, gt),
                       "volume_iou": volume_iou(mesh, gt, args.iou_resolution), "iou_floor": floor,
                       "chamfer_gt_frame": chamfer_distance(mesh, gt, frame="gt"),
                       "volume_iou_gt_frame": volume_iou(mesh, gt, args.iou_resolution, frame="gt"),
                       "normal_consistency": normal_consistency(mesh, gt),
                       "genus": genus(mesh), "genus_gt": shape.genus, "hull_iou": hull_iou, "hull_genus": hull_genus,
                       "carved_hull_iou": carved_iou, "carved_hull_genus": carved_genus,
                       "psnr_texture": view_psnr["texture"], "psnr_vertex_colors": view_psnr["vertex"],
                       "textured": mesh.texture is not None, "faces": int(len(mesh.faces)), "seconds": seconds,
                       "load_average": [load_before, _load()]}
                rows.append(row)
                print(f"{name:<10} {size:>4} {m:>3} {row['chamfer']:>8.4f} {row['volume_iou']:>6.3f} {floor:>6.3f} "
                      f"{row['volume_iou_gt_frame']:>6.3f} {row['normal_consistency']:>6.3f} "
                      f"{row['genus']:>2}/{shape.genus:<2} {row['psnr_texture']:>8.2f} {row['psnr_vertex_colors']:>7.2f} "
                      f"{row['faces']:>6} {seconds:>7.1f}" + ("" if floor >= MIN_IOU_FLOOR else "  (IoU floor < 0.97)"),
                      flush=True)
    for m in args.interp:
        sel = [r for r in rows if r["M"] == m]
        print(f"mean M={m}: CD {_mean(sel, 'chamfer'):.4f}  IoU {_mean(sel, 'volume_iou'):.4f}  "
              f"NC {_mean(sel, 'normal_consistency'):.4f}  genus right {sum(r['genus'] == r['genus_gt'] for r in sel)}/{len(sel)}  "
              f"PSNR texture {_mean(sel, 'psnr_texture'):.2f} dB  vertex colors {_mean(sel, 'psnr_vertex_colors'):.2f} dB")
    report = {
        "preset": preset, "elevation_deg": args.elevation, "threads": args.threads,
        "iou_resolution": args.iou_resolution, "texture_size": base.texture.size,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "paper_gso": PAPER, "rows": rows,
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def _load() -> float:
    """The 1-minute load average: what shared the cores while a figure was measured."""
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    return cli_main(make_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
