"""Reconstruction quality on procedural ground truth: Chamfer distance and volume IoU.

Each shape of engine.recon.shapes is rendered in Hi3D's 16-view layout (radius 1.5, one
elevation, FoV 49.1 deg, white background), reconstructed with M = 0 and M = 16
interpolated views at two image sizes, and compared with its ground-truth mesh in the
paper's normalisation (engine.recon.quality), and by the PSNR of its baked texture (and of
its vertex colors) rendered at held-out azimuths. Prints a table, writes JSON.

    python bench/recon_quality.py                 # cpu_small, 4 shapes, 64 and 128 px
    python bench/recon_quality.py --quick         # test preset, sphere + composite, 48 and 64 px
    python bench/recon_quality.py --preset gpu --sizes 512 1024
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace

import torch

from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.files import atomic_write_json
from hi3d.engine.recon import reconstruct
from hi3d.engine.recon.config import PRESETS, recon_preset
from hi3d.engine.recon.mesh_render import render_mesh
from hi3d.engine.recon.quality import HELD_OUT_AZIMUTHS, chamfer_distance, held_out_psnr, volume_iou
from hi3d.engine.recon.shapes import SHAPES

PAPER = {"M=0": (0.0186, 0.6375), "M=16": (0.0172, 0.6631)}  # Hi3D Table 4, GSO


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="test preset, 2 shapes, small images")
    p.add_argument("--preset", choices=PRESETS, default=None)
    p.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=None)
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="image sizes the fits run at")
    p.add_argument("--interp", nargs="+", type=int, default=[0, 16], help="values of M")
    p.add_argument("--elevation", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results/recon_quality.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    preset = args.preset or ("test" if args.quick else "cpu_small")
    shapes = args.shapes or (["sphere", "composite"] if args.quick else ["sphere", "box", "torus", "composite"])
    sizes = args.sizes or ([48, 64] if args.quick else [64, 128])

    rows = []
    print(f"preset {preset}, elevation {args.elevation:g} deg; paper (GSO): " +
          ", ".join(f"{k}: CD {v[0]} IoU {v[1]}" for k, v in PAPER.items()))
    print("chamfer / IoU: paper protocol (each mesh normalised by its own box); *_gt: both in the GT's box")
    print(f"psnr_tex / psnr_vc: texture / vertex colors rendered at azimuths {HELD_OUT_AZIMUTHS}, vs the ground truth")
    print(f"{'shape':<10} {'size':>5} {'M':>3} {'chamfer':>8} {'IoU':>7} {'cd_gt':>8} {'iou_gt':>7} "
          f"{'psnr_tex':>8} {'psnr_vc':>8} {'faces':>7} {'seconds':>8}")
    for name in shapes:
        gt = SHAPES[name].mesh(160)
        for size in sizes:
            base = recon_preset(preset)
            views = render_mesh(gt.vertices, gt.faces, gt.colors, hi3d_cameras(args.elevation, 2 * size))
            views = torch.from_numpy(views[..., :3]).permute(0, 3, 1, 2)
            for m in args.interp:
                cfg = replace(base, image_size=size, gs_image_size=min(base.gs_image_size, size), num_interp=m)
                t0 = time.perf_counter()
                mesh = reconstruct(views, args.elevation, cfg)
                seconds = time.perf_counter() - t0
                view_psnr = held_out_psnr(mesh, gt, args.elevation, size)
                row = {"shape": name, "image_size": size, "M": m, "chamfer": chamfer_distance(mesh, gt),
                       "volume_iou": volume_iou(mesh, gt), "chamfer_gt_frame": chamfer_distance(mesh, gt, frame="gt"),
                       "volume_iou_gt_frame": volume_iou(mesh, gt, frame="gt"),
                       "psnr_texture": view_psnr["texture"], "psnr_vertex_colors": view_psnr["vertex"],
                       "textured": mesh.texture is not None, "faces": int(len(mesh.faces)), "seconds": seconds}
                rows.append(row)
                print(f"{name:<10} {size:>5} {m:>3} {row['chamfer']:>8.4f} {row['volume_iou']:>7.4f} "
                      f"{row['chamfer_gt_frame']:>8.4f} {row['volume_iou_gt_frame']:>7.4f} "
                      f"{row['psnr_texture']:>8.2f} {row['psnr_vertex_colors']:>8.2f} "
                      f"{row['faces']:>7} {seconds:>8.1f}", flush=True)
    for m in args.interp:
        sel = [r for r in rows if r["M"] == m]
        print(f"mean M={m}: CD {sum(r['chamfer'] for r in sel) / len(sel):.4f}  "
              f"IoU {sum(r['volume_iou'] for r in sel) / len(sel):.4f}  "
              f"PSNR texture {sum(r['psnr_texture'] for r in sel) / len(sel):.2f} dB  "
              f"vertex colors {sum(r['psnr_vertex_colors'] for r in sel) / len(sel):.2f} dB")
    report = {
        "preset": preset, "elevation_deg": args.elevation, "threads": args.threads,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch": torch.__version__, "paper_gso": PAPER, "rows": rows,
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
