"""`hi3d`: the command line, the only place that parses arguments.

    hi3d generate IMAGE --out DIR [--weights DIR] [--preset tiny|full] [--mesh] ...
    hi3d generate --prompt TEXT --t2i DIR|tiny --out DIR [...]   (text -> image -> views)
    hi3d reconstruct VIEWS_DIR --out MESH
    hi3d demo --out DIR [--weights DIR --image IMAGE]
    hi3d serve build-repo | install-server | start ...   (hi3d/serve_cli.py)
    hi3d client IMAGE --url HOST:PORT --out DIR

Arguments are parsed here once and handed to the params dataclasses, which validate
them once. Bad input of any kind exits with code 2 and a message naming what is wrong.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from hi3d.engine.backends import DTYPES
from hi3d.engine.config import PRESETS
from hi3d.engine.errors import InvalidInput
from hi3d.engine.memory_plans import PLANS
from hi3d.engine.recon.config import PRESETS as RECON_PRESETS
from hi3d.export.backends import BACKENDS, EngineOptions

USAGE_ERROR = 2  # what argparse exits with, and so every bad-input path


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _bar(stage_bars: dict, stage: str, step: int, total: int, postfix: dict | None = None) -> None:
    from tqdm import tqdm

    bar = stage_bars.get(stage)
    if bar is None:
        bar = stage_bars[stage] = tqdm(total=total, desc=stage, unit="step", file=sys.stderr)
    bar.update(step - bar.n)
    if postfix:
        bar.set_postfix(postfix, refresh=False)
    if step == total:
        bar.close()


def _progress():
    """One tqdm bar per stage, for the pipeline's (stage, step, total) callbacks."""
    bars: dict = {}
    return lambda stage, step, total: _bar(bars, stage, step, total)


def _recon_progress():
    """The same for reconstruction's (stage, step, total, loss) callbacks."""
    bars: dict = {}
    return lambda stage, step, total, loss: _bar(bars, stage, step, total, {"loss": f"{loss:.4f}"})


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """--threads for the reconstruction only; the caller's thread count comes back after
    (main() is also called in-process, and the diffusion stages want every core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- generate --------------------------------------------------------------------------
def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(preset=args.preset, weights=args.weights, backend=args.backend, device=args.device,
                         dtype=args.dtype, artifacts=args.artifacts, memory_plan=args.memory_plan)


def recon_config(args: argparse.Namespace):
    from hi3d.engine.recon.config import recon_options

    return recon_options(args.recon_preset, args.seed, args.interp, torch.cuda.is_available(),
                         args.texture_size, args.vertex_colors)


def generate(opts: EngineOptions, params, img, out: Path, remove_background: bool, recon=None,
             input_image=None, recon_threads: int = 1) -> int:
    """Image -> views (and a mesh with `recon`, fitted on `recon_threads` CPU threads); everything
    computed before anything is written. `input_image` (the text-to-image result) is written beside
    the views as OUT/input.png."""
    from hi3d.engine import images
    from hi3d.engine.pipeline import Hi3DPipeline

    if opts.weights is None:
        print("No --weights given: running the `tiny` preset with seeded random weights. "
              "The views show the pipeline working, not a real object.", file=sys.stderr)
    cfg = opts.config()
    rgb = images.on_white(images.remove_background(img) if remove_background else img)
    image1, image2 = images.square_crop(rgb, cfg.stage1.resolution), images.square_crop(rgb, cfg.stage2.resolution)
    pipe = Hi3DPipeline(cfg, opts.networks(cfg))
    t0 = time.perf_counter()
    views = pipe(image1, image2, params, progress=_progress())
    elapsed = time.perf_counter() - t0
    mesh, mesh_views = None, None
    if recon is not None:
        from hi3d.engine.recon import reconstruct

        recon_views = (views.stage2.float() + 1.0) / 2.0
        if opts.weights is None:
            from hi3d.engine.recon.demo import DEMO_SHAPE, demo_object, render_views

            # Random weights' views are noise, which reconstruction rightly refuses ("no surface found");
            # the mesh step still runs end to end, on an object that is there.
            print(f"--mesh without --weights: the views are noise, so mesh.glb is the demo object ({DEMO_SHAPE}) "
                  f"reconstructed from its 16 rendered views ({out / 'mesh_views'}), not the input's object.",
                  file=sys.stderr)
            mesh_views = render_views(demo_object(), params.elevation, recon)
            recon_views = torch.from_numpy(mesh_views).permute(0, 3, 1, 2).float() / 255.0
        with torch_threads(recon_threads):
            mesh = reconstruct(recon_views, params.elevation, recon, _recon_progress())
    # A failure above leaves --out as it was; each file below is written atomically.
    if input_image is not None:
        from hi3d.engine.files import atomic_write

        atomic_write(out / "input.png", images.png_bytes(np.asarray(input_image.convert("RGB"))))
        print(f"text-to-image input -> {out / 'input.png'}")
    images.save_views(views.stage1, out / "stage1")
    images.save_views(views.stage2, out / "stage2")
    print(f"{cfg.name}: {len(views.stage2)} views in {elapsed:.1f} s -> {out}/stage1, {out}/stage2")
    if mesh_views is not None:
        images.write_view_pngs(mesh_views, out / "mesh_views")
    if mesh is not None:
        from hi3d.engine.recon import save_mesh

        save_mesh(mesh, out / "mesh.glb")
        print(f"mesh: {len(mesh.faces)} faces -> {out / 'mesh.glb'}")
    return 0


def text_image(args: argparse.Namespace, opts: EngineOptions):
    """--prompt -> the object image on white (engine/text_to_image.py), on the engine's device and dtype."""
    from hi3d.engine.text_to_image import TINY, TextToImageParams, default_steps, generate_image, load_pipeline

    if args.t2i is None:
        raise InvalidInput("--prompt needs --t2i DIR (a local diffusers text-to-image folder) or --t2i tiny")
    t2i = TextToImageParams(prompt=args.prompt, seed=args.seed, steps=args.t2i_steps or default_steps(args.t2i),
                            guidance=args.guidance, size=args.t2i_size)
    tiny = args.t2i == TINY
    if tiny:
        print("--t2i tiny: a seeded random text-to-image pipeline; its image is noise, not the prompt's object.",
              file=sys.stderr)
    pipe = load_pipeline(args.t2i, opts.torch_device, opts.torch_dtype)
    result = generate_image(pipe, t2i, remove_background=not tiny, progress=_progress())
    if result.background == "as generated" and not tiny:
        print("note: the text-to-image output has no alpha and rembg is not installed "
              "(pip install 'hi3d-engine[rembg]'): using it as generated; the prompt asked for a white background.",
              file=sys.stderr)
    return result.image


def cmd_generate(args: argparse.Namespace) -> int:
    from hi3d.engine import images
    from hi3d.engine.pipeline import GenerationParams

    if (args.image is None) == (args.prompt is None):
        raise InvalidInput("give either IMAGE or --prompt TEXT (not both)")
    if args.prompt is None and args.t2i is not None:
        raise InvalidInput("--t2i only applies with --prompt")
    params = GenerationParams(elevation=args.elevation, seed=args.seed, steps=args.steps)
    opts = engine_options(args)
    recon = recon_config(args) if args.mesh else None
    if args.prompt is not None:
        img = text_image(args, opts)
        return generate(opts, params, img, args.out, False, recon, input_image=img, recon_threads=args.threads)
    return generate(opts, params, images.load_image(args.image), args.out, args.remove_background, recon,
                    recon_threads=args.threads)


# --- reconstruct / demo ------------------------------------------------------------------
def cmd_reconstruct(args: argparse.Namespace) -> int:
    from hi3d.engine.recon import reconstruct
    from hi3d.engine.recon.mesh import MESH_FORMATS, save_mesh
    from hi3d.engine.recon.views import load_views

    if args.out.suffix.lower() not in MESH_FORMATS:
        raise InvalidInput(f"--out must end in one of {', '.join(MESH_FORMATS)}, got {args.out.name!r}")
    cfg = recon_config(args)
    views = load_views(args.views_dir)
    t0 = time.perf_counter()
    with torch_threads(args.threads):
        mesh = reconstruct(views, args.elevation, cfg, _recon_progress(), gaussians_path=args.save_gaussians)
    save_mesh(mesh, args.out)
    print(f"wrote {args.out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """No weights: reconstruct a rendered object. With --weights and --image: image -> mesh."""
    from hi3d.engine.pipeline import GenerationParams

    if args.weights is not None or args.image is not None:
        if args.weights is None or args.image is None:
            raise InvalidInput("demo with real weights needs both --weights DIR and --image IMAGE")
        params = GenerationParams(elevation=args.elevation, seed=args.seed)
        opts = EngineOptions(weights=args.weights, device="cuda" if torch.cuda.is_available() else "cpu")
        from hi3d.engine import images

        return generate(opts, params, images.load_image(args.image), args.out, False, recon_config(args),
                        recon_threads=args.threads)
    from hi3d.engine.recon.demo import run_demo

    cfg = recon_config(args)
    with torch_threads(args.threads):
        result = run_demo(args.out, cfg, args.elevation, _recon_progress())
    m = result.metrics
    print(f"wrote {result.mesh_path} ({m['faces']} faces) in {m['seconds']:.1f} s")
    print(f"vs ground truth: Chamfer {m['chamfer']:.4f}  volume IoU {m['volume_iou']:.4f} "
          f"(paper protocol; Hi3D on GSO: 0.0172 / 0.6631)")
    print(f"in the ground truth's frame: Chamfer {m['chamfer_gt_frame']:.4f}  volume IoU {m['volume_iou_gt_frame']:.4f}")
    return 0


# --- the parser ---------------------------------------------------------------------------
def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, help="folder with first_stage.pt, second_stage.pt and ckpts/ (docs/weights.md)")
    p.add_argument("--preset", choices=list(PRESETS), help="model sizes (default: full with --weights, else tiny)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", choices=list(DTYPES), help="default: fp16 on cuda, fp32 on cpu")
    p.add_argument("--backend", default="torch", choices=list(BACKENDS),
                   help="; ".join(f"{b.name}: {b.summary}" for b in BACKENDS.values()))
    p.add_argument("--artifacts", type=Path, default=Path("build"), help="ONNX/TensorRT artifacts (onnxruntime, tensorrt)")
    add_memory_plan_arg(p)


def add_memory_plan_arg(p: argparse.ArgumentParser) -> None:
    """--memory-plan: any string, so that EngineOptions refuses a bad one (exit 2 naming the choices)."""
    p.add_argument("--memory-plan", default="resident", metavar="auto|" + "|".join(PLANS),
                   help="; ".join(f"{plan.name}: {plan.summary}" for plan in PLANS.values())
                   + "; auto: the fastest whose estimate fits the free device memory (docs/generation.md)")


def _add_recon_args(p: argparse.ArgumentParser, elevation: float = 0.0, preset_flag: str = "--preset") -> None:
    p.add_argument("--elevation", type=float, default=elevation, help=f"camera elevation in degrees (default {elevation:g})")
    p.add_argument(preset_flag, dest="recon_preset", choices=RECON_PRESETS, help="reconstruction schedule "
                   "(default: gpu with CUDA, else cpu_small)")
    p.add_argument("--interp", type=int, default=None, metavar="M",
                   help="extra views rendered from the 3DGS (default 16; 0 skips the 3DGS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--texture-size", type=positive_int, default=None, metavar="N",
                   help="texture atlas of N x N texels baked from the views (default 2048)")
    p.add_argument("--vertex-colors", action="store_true", help="no texture: vertex colors only")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads for torch (default 1: the fits' many small ops gain little from more, "
                        "and lose a lot when the cores are shared)")


def make_parser() -> argparse.ArgumentParser:
    from hi3d.engine.recon.demo import DEMO_ELEVATION
    from hi3d.engine.recon.mesh import MESH_FORMATS
    from hi3d.serve_cli import add_client_parser, add_serve_parser

    parser = argparse.ArgumentParser(prog="hi3d", description="Hi3D: one image -> 16 orbit views -> textured mesh")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="image -> 16 views at stage-1 and stage-2 resolution (and a mesh)")
    g.add_argument("image", type=Path, nargs="?", help="the photo (or give --prompt)")
    g.add_argument("--prompt", help="text -> image with --t2i first, then the views (docs/generation.md)")
    g.add_argument("--t2i", metavar="DIR|tiny", help="a local diffusers text-to-image folder (SD 1.x/2.x, SDXL), "
                   "or tiny: seeded random weights")
    g.add_argument("--t2i-steps", type=positive_int, help="text-to-image steps (default 30; 2 for tiny)")
    g.add_argument("--guidance", type=float, default=7.5, help="text-to-image guidance scale (default 7.5)")
    g.add_argument("--t2i-size", type=int, help="text-to-image side in pixels (default: the pipeline's)")
    g.add_argument("--out", type=Path, required=True)
    _add_engine_args(g)
    g.add_argument("--steps", type=int, help="sampler steps (default: the preset's; 25 for full)")
    g.add_argument("--remove-background", action="store_true", help="matte the object with rembg first")
    g.add_argument("--mesh", action="store_true", help="also reconstruct the stage-2 views into OUT/mesh.glb "
                   "(without --weights: the demo object, since random weights' views are noise)")
    _add_recon_args(g, preset_flag="--recon-preset")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("reconstruct", help="16 orbit views -> colored mesh (3DGS -> NeuS -> marching cubes)")
    r.add_argument("views_dir", type=Path, help="folder with the 16 views (000.png ... 015.png)")
    r.add_argument("--out", type=Path, required=True, help=f"output mesh, one of {', '.join(MESH_FORMATS)}")
    _add_recon_args(r)
    r.add_argument("--save-gaussians", type=Path, metavar="PLY", help="also write the fitted 3DGS as a standard .ply")
    r.set_defaults(func=cmd_reconstruct)

    d = sub.add_parser("demo", help="render a toy object in Hi3D's 16 views and reconstruct it (no weights)")
    d.add_argument("--out", type=Path, required=True, help="output folder (views/, demo.glb, demo_metrics.json)")
    _add_recon_args(d, elevation=DEMO_ELEVATION)
    d.add_argument("--weights", type=Path, help="with --image: run the whole image -> mesh path on real weights")
    d.add_argument("--image", type=Path, help="the photo to turn into a mesh (with --weights)")
    d.set_defaults(func=cmd_demo)

    add_serve_parser(sub)
    add_client_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)  # exits 2 itself on a malformed command line
    # transformers warns at import that its (unused) image processors want torchvision
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        return args.func(args)
    except InvalidInput as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
