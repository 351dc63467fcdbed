"""`hi3d` command line: the only place that parses arguments.

    hi3d generate IMAGE --out DIR [--weights DIR] [--preset tiny|full] ...
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _progress_bar():
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, step: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="step", leave=True)
        bar.update(step - bar.n)
        if step == total:
            bar.close()

    return update


def add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, help="folder with first_stage.pt, second_stage.pt and ckpts/ (see README)")
    p.add_argument("--preset", choices=["tiny", "full"], help="model sizes (default: full with --weights, else tiny)")
    p.add_argument("--elevation", type=float, default=0.0, help="camera elevation in degrees (trained on -10..40)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the preset's; 25 for full)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", choices=list(DTYPES), help="default: fp16 on cuda, fp32 on cpu")
    p.add_argument("--backend", default="torch", choices=["torch", "compiled", "onnxruntime", "tensorrt"])
    p.add_argument("--artifacts", type=Path, default=Path("build"), help="ONNX/TensorRT artifacts (non-torch backends)")
    p.add_argument("--remove-background", action="store_true", help="matte the object with rembg first")
    p.add_argument("--mesh", action="store_true", help="also reconstruct the stage-2 views into OUT/mesh.glb")
    p.add_argument("--recon-preset", choices=["cpu_small", "gpu"], help="reconstruction schedule (default: by device)")


def build_pipeline(args: argparse.Namespace):
    """Config + networks + pipeline from parsed arguments, validating them first."""
    from hi3d.engine.backends.torch_backend import load_modules, torch_networks
    from hi3d.engine.config import preset
    from hi3d.engine.pipeline import Hi3DPipeline

    if args.weights is None:
        if args.preset == "full":
            raise SystemExit("error: --preset full needs --weights DIR (the official checkpoints)")
        print("No --weights given: running the `tiny` preset with seeded random weights. "
              "The views show the pipeline working, not a real object.", file=sys.stderr)
        name = "tiny"
    else:
        if not args.weights.is_dir():
            raise SystemExit(f"error: --weights {args.weights}: no such directory")
        name = args.preset or "full"
    cfg = preset(name)
    if args.steps is not None:
        if args.steps < 1:
            raise SystemExit(f"error: --steps must be >= 1, got {args.steps}")
        cfg = cfg.with_steps(args.steps)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is available")
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    if args.backend in ("torch", "compiled"):
        nets = torch_networks(load_modules(cfg, args.weights), device, dtype, compile=args.backend == "compiled")
    else:
        from hi3d.engine.backends.factory import make_networks

        nets = make_networks(args.backend, cfg, args.weights, device, dtype, args.artifacts)
    return cfg, Hi3DPipeline(cfg, nets)


def prepare_input(path: Path, cfg, remove_bg: bool):
    """Image file -> (image at stage-1 resolution, image at stage-2 resolution)."""
    from hi3d.engine import images

    img = images.load_image(path)
    if remove_bg:
        img = images.remove_background(img)
    rgb = images.on_white(img)
    return images.square_crop(rgb, cfg.stage1.resolution), images.square_crop(rgb, cfg.stage2.resolution)


def cmd_generate(args: argparse.Namespace) -> int:
    from hi3d.engine import images
    from hi3d.engine.pipeline import GenerationParams

    params = GenerationParams(elevation=args.elevation, seed=args.seed, steps=args.steps)
    params.validate()
    if args.mesh and args.weights is None:
        raise SystemExit("error: --mesh needs --weights: the weight-free tiny views are noise, not an object "
                         "(`hi3d demo` shows the reconstruction on a rendered object)")
    cfg, pipe = build_pipeline(args)
    image1, image2 = prepare_input(args.image, cfg, args.remove_background)
    t0 = time.perf_counter()
    views = pipe(image1, image2, params, progress=_progress_bar())
    elapsed = time.perf_counter() - t0
    mesh = reconstruct_views(views.stage2, args) if args.mesh else None
    # Everything is computed before anything is written: a failure leaves --out untouched.
    images.save_views(views.stage1, args.out / "stage1")
    images.save_views(views.stage2, args.out / "stage2")
    print(f"{cfg.name}: {len(views.stage2)} views in {elapsed:.1f} s -> {args.out}/stage1, {args.out}/stage2")
    if mesh is not None:
        from hi3d.engine.recon import save_mesh

        save_mesh(mesh, args.out / "mesh.glb")
        print(f"mesh: {len(mesh.faces)} faces -> {args.out / 'mesh.glb'}")
    return 0


def reconstruct_views(views: torch.Tensor, args: argparse.Namespace):
    """Stage-2 views ([-1, 1]) -> colored mesh, with the reconstruction schedule for the device."""
    from dataclasses import replace

    from hi3d.engine.recon import recon_preset, reconstruct

    name = args.recon_preset or ("gpu" if args.device == "cuda" else "cpu_small")
    cfg = replace(recon_preset(name), seed=args.seed)
    return reconstruct((views.float() + 1.0) / 2.0, args.elevation, cfg)


def cmd_demo(args: argparse.Namespace) -> int:
    """No weights: reconstruct a rendered object. With --weights and --image: image -> mesh."""
    if args.weights is None:
        from hi3d.engine.recon.cli import run_demo

        return run_demo(args)
    if args.image is None:
        raise SystemExit("error: demo --weights needs --image IMAGE")
    gen = make_parser().parse_args(["generate", str(args.image), "--out", str(args.out), "--weights",
                                    str(args.weights), "--elevation", str(args.elevation), "--seed",
                                    str(args.seed), "--mesh"])
    return cmd_generate(gen)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hi3d", description="Hi3D: one image -> 16 orbit views -> textured mesh")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="image -> 16 views at stage-1 and stage-2 resolution")
    g.add_argument("image", type=Path)
    g.add_argument("--out", type=Path, required=True)
    add_generation_args(g)
    g.set_defaults(func=cmd_generate)
    from hi3d.engine.recon.cli import add_demo_parser, add_reconstruct_parser

    add_reconstruct_parser(sub)
    d = add_demo_parser(sub)
    d.add_argument("--weights", type=Path, help="with --image: run the whole image -> mesh path on real weights")
    d.add_argument("--image", type=Path, help="the photo to turn into a mesh (with --weights)")
    d.set_defaults(func=cmd_demo)
    from hi3d.serving.cli import add_client_parser, add_serve_parser

    add_serve_parser(sub)
    add_client_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    # transformers warns at import that its (unused) image processors want torchvision
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
