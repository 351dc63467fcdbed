"""Mesh metrics on a folder of objects: Chamfer distance, volume IoU and F-score per object
and their mean, as in the Hi3D paper's Table 2 (GSO: Chamfer 0.0172, volume IoU 0.6631).

    python -m hi3d.bench.mesh_metrics --pred meshes/ --gt gso/ [--out metrics.json]

Each ground-truth mesh gt/NAME.{glb,obj,ply} is matched with pred/NAME.{glb,obj,ply} or
pred/NAME/mesh.glb (what `hi3d generate --mesh --out pred/NAME` writes). Both are normalised
on their own as the paper does (bounding box centred, longest side 1; engine/recon/quality.py);
no rotation is fitted, so the ground truth must be in the frame its views were rendered in:
ground-truth files are taken as +y-up and turned z-up (--gt-up z for z-up files), predicted
meshes are in the engine's z-up frame. Beside each score the ground truth's self-score (the
mesh against itself, sampled anew) shows the metric's floor at this sampling.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hi3d.bench.common import cli_main
from hi3d.engine.errors import InvalidInput
from hi3d.engine.files import atomic_write_json
from hi3d.engine.recon.mesh import MESH_FORMATS, Mesh, load_mesh
from hi3d.engine.recon.quality import chamfer_from, f_score_from, surface_distances, to_z_up, volume_iou

PAPER = {"chamfer": 0.0172, "volume_iou": 0.6631}  # Hi3D Table 2, GSO
METRICS = ("chamfer", "volume_iou", "f_score")


def find_pairs(pred_root: Path, gt_root: Path) -> list[tuple[str, Path, Path]]:
    gts = sorted(p for p in gt_root.iterdir() if p.is_file() and p.suffix.lower() in MESH_FORMATS)
    if not gts:
        raise InvalidInput(f"--gt {gt_root}: no mesh files ({', '.join(MESH_FORMATS)}) in it")
    pairs = []
    for gt in gts:
        candidates = [pred_root / f"{gt.stem}{s}" for s in MESH_FORMATS] + [pred_root / gt.stem / "mesh.glb"]
        pred = next((c for c in candidates if c.is_file()), None)
        if pred is None:
            raise InvalidInput(f"--pred {pred_root}: no mesh for {gt.name} "
                               f"(looked for {gt.stem}.glb/.obj/.ply and {gt.stem}/mesh.glb)")
        pairs.append((gt.stem, pred, gt))
    return pairs


def scores(pred: Mesh, gt: Mesh, num_points: int, threshold: float, seed: int = 0) -> dict[str, float]:
    d_pg, d_gp = surface_distances(pred, gt, num_points, seed)
    return {"chamfer": chamfer_from(d_pg, d_gp), "volume_iou": volume_iou(pred, gt),
            "f_score": f_score_from(d_pg, d_gp, threshold)}


def evaluate(pred_root: Path, gt_root: Path, num_points: int, threshold: float, gt_up: str) -> dict:
    rows = []
    for name, pred_path, gt_path in find_pairs(pred_root, gt_root):
        pred, gt = load_mesh(pred_path), load_mesh(gt_path)
        gt = Mesh(to_z_up(gt.vertices, gt_up), gt.faces, gt.colors)
        # seed 2 vs the pair's 0/1: the self-score compares two independent samplings of the GT
        self_score = scores(gt, gt, num_points, threshold, seed=2)
        rows.append({"object": name, "pred": str(pred_path), **scores(pred, gt, num_points, threshold),
                     **{f"gt_self_{k}": v for k, v in self_score.items()}})
    means = {k: float(np.mean([r[k] for r in rows])) for k in METRICS}
    self_means = {f"gt_self_{k}": float(np.mean([r[f"gt_self_{k}"] for r in rows])) for k in METRICS}
    return {**means, **self_means, "objects": rows}


def print_table(result: dict, threshold: float) -> None:
    print(f"{'object':<24} {'chamfer':>8} {'(gt)':>8} {'IoU':>7} {'(gt)':>7} {f'F@{threshold:g}':>7} {'(gt)':>7}")
    for r in [*result["objects"], {"object": "mean", **result}]:
        print(f"{r['object']:<24} {r['chamfer']:>8.4f} {r['gt_self_chamfer']:>8.4f} {r['volume_iou']:>7.4f} "
              f"{r['gt_self_volume_iou']:>7.4f} {r['f_score']:>7.4f} {r['gt_self_f_score']:>7.4f}")
    print(f"(gt): the ground truth against itself. Paper (GSO): Chamfer {PAPER['chamfer']}, IoU {PAPER['volume_iou']}")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hi3d.bench.mesh_metrics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", type=Path, required=True, help="predicted meshes: NAME.glb or NAME/mesh.glb")
    p.add_argument("--gt", type=Path, required=True, help="ground-truth meshes NAME.{glb,obj,ply}")
    p.add_argument("--out", type=Path, help="write the metrics as JSON here")
    p.add_argument("--points", type=int, default=100_000, help="surface samples per mesh (default 100000)")
    p.add_argument("--fscore-threshold", type=float, default=0.05,
                   help="F-score distance threshold in the normalised frame (default 0.05)")
    p.add_argument("--gt-up", choices=["y", "z"], default="y", help="up axis of the ground-truth files")
    return p


def run(args: argparse.Namespace) -> int:
    for flag, folder in (("--pred", args.pred), ("--gt", args.gt)):
        if not folder.is_dir():
            raise InvalidInput(f"{flag} {folder}: not a directory")
    if args.points < 1:
        raise InvalidInput(f"--points must be >= 1, got {args.points}")
    if not 0.0 < args.fscore_threshold < 1.0:  # also refuses NaN
        raise InvalidInput(f"--fscore-threshold must be in (0, 1), got {args.fscore_threshold}")
    result = evaluate(args.pred, args.gt, args.points, args.fscore_threshold, args.gt_up)
    print_table(result, args.fscore_threshold)
    if args.out is not None:
        atomic_write_json(args.out, {**result, "fscore_threshold": args.fscore_threshold, "points": args.points,
                                     "paper_gso": PAPER})
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main(make_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
