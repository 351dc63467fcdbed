"""Novel-view metrics against ground truth: PSNR, SSIM (and LPIPS) per view and their mean,
as in the Hi3D paper's Table 1 (GSO: PSNR 24.26, SSIM 0.864, LPIPS 0.119).

    python -m hi3d.bench.nvs_metrics --pred out/ --gt gt/ [--out metrics.json] [--lpips-weights lpips_vgg.pth]
    python -m hi3d.bench.nvs_metrics --render-gt object.glb --elevation 10 --gt gt/ [--pred out/]

A view set is a folder holding the 16 views 000.png ... 015.png (view k at azimuth 360 k / 16,
see engine/cameras.py). Every view set under --gt is compared with the view set at the same
relative path under --pred: `hi3d generate`'s out/stage1 and out/stage2 for one object, or
obj_a/stage2, obj_b/stage2, ... for a data set. Views of another size than the ground truth
are resized to it (area averaging); --size N resizes both to N first.

--render-gt renders a mesh (.glb/.obj, textured or vertex-colored) into --gt as the training
data was rendered: bounding box centred and its longest side scaled to 1, the 16 Hi3D
cameras at radius 1.5 and the given elevation, a 35 mm lens on a 32 mm sensor, white
background, at the stage resolutions (gt/stage1 at 512 px, gt/stage2 at 1024 px for `full`).
Meshes are taken as +y-up (glTF, most OBJ exports; --up z for z-up files) and turned z-up
as Blender's importers do.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import trimesh

from hi3d.bench.common import cli_main
from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.config import PRESETS
from hi3d.engine.errors import InvalidInput
from hi3d.engine.files import atomic_write_json
from hi3d.engine.image_metrics import load_lpips, lpips_distance, psnr, resize, ssim
from hi3d.engine.images import write_view_pngs
from hi3d.engine.recon.mesh_render import render_mesh
from hi3d.engine.recon.quality import normalize, to_z_up
from hi3d.engine.recon.views import load_views

PAPER = {"psnr": 24.26, "ssim": 0.864, "lpips": 0.119}  # Hi3D Table 1, GSO
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def view_sets(root: Path) -> list[Path]:
    """Folders under `root` (itself included) holding numbered views, relative to `root`."""
    found = []
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if any(f.stem.isdigit() and f.suffix.lower() in IMAGE_SUFFIXES for f in folder.iterdir() if f.is_file()):
            found.append(folder.relative_to(root))
    return found


def load_render_mesh(path: Path, up: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple | None]:
    """A mesh file -> normalised z-up vertices [V, 3], faces [F, 3], vertex colors [V, 3] and
    (face-corner uv [F, 3, 2], texture [S, S, 3]) when it carries a texture."""
    if not path.is_file():
        raise InvalidInput(f"--render-gt {path}: no such file")
    try:
        tm = trimesh.load(path, force="mesh", process=False)
    except Exception as e:  # trimesh raises many types on unreadable files
        raise InvalidInput(f"--render-gt {path}: not a readable mesh ({e})") from None
    if len(getattr(tm, "faces", ())) == 0:
        raise InvalidInput(f"--render-gt {path}: no triangles")
    vertices = normalize(to_z_up(np.asarray(tm.vertices, np.float64), up))
    faces = np.asarray(tm.faces, np.int64)
    texture = None
    material = getattr(tm.visual, "material", None)
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    uv = getattr(tm.visual, "uv", None)
    if image is not None and uv is not None:
        side = max(image.size)  # the renderer samples square textures
        tex = np.asarray(image.convert("RGB").resize((side, side)), np.float64) / 255.0
        texture = (np.asarray(uv, np.float64)[faces], tex)
        colors = np.ones((len(vertices), 3))
    else:
        visual = tm.visual.to_color() if hasattr(tm.visual, "to_color") else tm.visual
        colors = np.asarray(visual.vertex_colors, np.float64)[:, :3] / 255.0
    return vertices, faces, colors, texture


def render_gt(mesh: Path, elevation: float, sizes: dict[str, int], out: Path, up: str = "y") -> None:
    """Write out/<stage>/000.png ... 015.png (RGBA, on white) for each stage resolution."""
    vertices, faces, colors, texture = load_render_mesh(mesh, up)
    for stage, size in sizes.items():
        views = render_mesh(vertices, faces, colors, hi3d_cameras(elevation, size), texture=texture)
        write_view_pngs(np.round(views * 255).astype(np.uint8), out / stage)
        print(f"rendered {len(views)} ground-truth views at {size} px -> {out / stage}")


def compare(pred_root: Path, gt_root: Path, size: int | None, lpips_model=None) -> dict:
    sets = view_sets(gt_root)
    if not sets:
        raise InvalidInput(f"--gt {gt_root}: no folder of numbered views (000.png ... 015.png) in it")
    views, by_set = [], {}
    for rel in sets:
        if not (pred_root / rel).is_dir():
            raise InvalidInput(f"--pred {pred_root}: no view folder {rel} to match --gt {gt_root / rel}")
        gt = load_views(gt_root / rel).permute(0, 2, 3, 1).numpy()
        pred = load_views(pred_root / rel).permute(0, 2, 3, 1).numpy()
        rows = []
        for k, (p, g) in enumerate(zip(pred, gt)):
            if size is not None:
                p, g = resize(p, size), resize(g, size)
            elif p.shape != g.shape:
                p = resize(p, g.shape[0])
            row = {"set": str(rel), "view": k, "psnr": psnr(p, g), "ssim": ssim(p, g),
                   "lpips": None if lpips_model is None else lpips_distance(lpips_model, p, g)}
            rows.append(row)
        by_set[str(rel)] = _means(rows)
        views += rows
    return {**_means(views), "sets": by_set, "views": views}


def _means(rows: list[dict]) -> dict:
    out = {}
    for key in ("psnr", "ssim", "lpips"):
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _fmt(x: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width}.{digits}f}"


def print_table(result: dict) -> None:
    print(f"{'set':<24} {'view':>4} {'PSNR':>7} {'SSIM':>7} {'LPIPS':>7}")
    for r in result["views"]:
        print(f"{r['set']:<24} {r['view']:>4} {_fmt(r['psnr'], 7, 2)} {_fmt(r['ssim'], 7, 4)} {_fmt(r['lpips'], 7, 4)}")
    for name, m in result["sets"].items():
        print(f"{name:<24} {'mean':>4} {_fmt(m['psnr'], 7, 2)} {_fmt(m['ssim'], 7, 4)} {_fmt(m['lpips'], 7, 4)}")
    print(f"{'all':<24} {'mean':>4} {_fmt(result['psnr'], 7, 2)} {_fmt(result['ssim'], 7, 4)} "
          f"{_fmt(result['lpips'], 7, 4)}   (paper, GSO: {PAPER['psnr']} / {PAPER['ssim']} / {PAPER['lpips']})")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hi3d.bench.nvs_metrics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", type=Path, help="generated views (e.g. hi3d generate's --out)")
    p.add_argument("--gt", type=Path, required=True, help="ground-truth views (written here with --render-gt)")
    p.add_argument("--out", type=Path, help="write the metrics as JSON here")
    p.add_argument("--lpips-weights", type=Path, help="an lpips.LPIPS state dict (.pth); without it LPIPS is null")
    p.add_argument("--size", type=int, help="resize predicted and ground-truth views to N x N first")
    p.add_argument("--render-gt", type=Path, metavar="MESH", help="render this mesh into --gt first")
    p.add_argument("--elevation", type=float, help="camera elevation in degrees (with --render-gt)")
    p.add_argument("--preset", choices=list(PRESETS), default="full", help="stage resolutions for --render-gt")
    p.add_argument("--up", choices=["y", "z"], default="y", help="up axis of the --render-gt mesh file")
    return p


def run(args: argparse.Namespace) -> int:
    if args.size is not None and args.size < 11:
        raise InvalidInput(f"--size must be >= 11 (the SSIM window), got {args.size}")
    if args.render_gt is not None:
        if args.elevation is None or not -90.0 <= args.elevation <= 90.0:
            raise InvalidInput(f"--elevation in [-90, 90] degrees is needed with --render-gt, got {args.elevation}")
        cfg = PRESETS[args.preset]()
        render_gt(args.render_gt, args.elevation, {"stage1": cfg.stage1.resolution, "stage2": cfg.stage2.resolution},
                  args.gt, args.up)
        if args.pred is None:
            return 0
    elif args.elevation is not None:
        raise InvalidInput("--elevation only applies with --render-gt")
    if args.pred is None:
        raise InvalidInput("--pred is required (unless --render-gt only writes the ground truth)")
    for flag, folder in (("--pred", args.pred), ("--gt", args.gt)):
        if not folder.is_dir():
            raise InvalidInput(f"{flag} {folder}: not a directory")
    if args.lpips_weights is not None and not args.lpips_weights.is_file():
        raise InvalidInput(f"--lpips-weights {args.lpips_weights}: no such file")
    model = None if args.lpips_weights is None else load_lpips(args.lpips_weights)
    result = compare(args.pred, args.gt, args.size, model)
    print_table(result)
    if args.out is not None:
        atomic_write_json(args.out, {**result, "paper_gso": PAPER, "pred": str(args.pred), "gt": str(args.gt)})
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main(make_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
