"""Gaussian rasterizer benchmark: our Triton kernels vs gsplat's CUDA ``rasterization``.

    python -m hi3d.bench.kernels_gaussians [--device cpu|cuda] [--n 200000] [--size 1024]
                                      [--out results/kernels_gaussians.json]

On CUDA: N Gaussians (a seeded cloud filling a unit ball, 3DGS-like scales and opacities)
seen at size x size by a 49.1-degree camera, RGB colors; forward and forward+backward (loss =
weighted sum of rgb, alpha and depth) for impl="triton", "gsplat" (when importable and
its CUDA extension builds) and "torch" (the reference, at N <= 50k only: it is slow). Each
gsplat row also records the largest rgb difference to our image. On CPU the Triton kernels
run interpreted, at a tiny size, for the record only. ``bench_gaussians`` returns one row
(dict) per (impl, mode); ``bench/kernels.py`` merges them into its table.
"""
from __future__ import annotations

import argparse
import math
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch

from hi3d.bench.common import mean_ms
from hi3d.engine.files import atomic_write_json

MODES = ("fwd", "fwd+bwd")


def make_scene(n: int, size: int, device: str, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    params = {
        "means": direction * torch.rand(n, 1, generator=g).pow(1 / 3),
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.exp(torch.randn(n, 3, generator=g) * 0.5 - 4.8),  # ~0.008, log-normal
        "opacities": torch.rand(n, generator=g) * 0.9 + 0.05,
        "colors": torch.rand(n, 3, generator=g),
    }
    f = 0.5 * size / math.tan(math.radians(49.1) / 2)
    view = torch.eye(4)
    view[2, 3] = 2.6  # camera on the -z axis looking at the origin (OpenCV axes)
    camera = {
        "viewmat": view, "K": torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]),
        "width": size, "height": size, "background": torch.ones(3),
    }
    params = {k: v.to(device) for k, v in params.items()}
    camera = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in camera.items()}
    return params, camera


def _step(params: dict, camera: dict, impl: str, mode: str) -> Callable[[], None]:
    from hi3d.kernels.gaussians import rasterize

    leaves = {k: v.detach().clone().requires_grad_(mode != "fwd") for k, v in params.items()}

    def run() -> None:
        with torch.no_grad() if mode == "fwd" else nullcontext():
            rgb, alpha, depth = rasterize(**leaves, **camera, impl=impl)
        if mode != "fwd":
            (rgb.sum() + alpha.sum() + 0.1 * depth.sum()).backward()
            for v in leaves.values():
                v.grad = None

    return run


def bench_gaussians(device: str | None = None, n: int | None = None, size: int | None = None,
                    iters: int | None = None) -> list[dict]:
    """Rows {kernel, impl, mode, ms, n, size, device[, max_abs_rgb_diff_vs_triton | error]}."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device == "cuda"
    n = n or (200_000 if on_gpu else 300)
    size = size or (1024 if on_gpu else 48)
    iters = iters or (20 if on_gpu else 1)
    params, camera = make_scene(n, size, device)
    if not on_gpu and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("on CPU the Triton kernels run interpreted: set TRITON_INTERPRET=1 "
                           "before anything imports triton (main() does)")
    impls = ["triton", "gsplat"] + (["torch"] if n <= 50_000 else [])
    rows, ours = [], None
    for impl in impls:
        if impl == "gsplat" and not on_gpu:
            continue
        for mode in MODES:
            row = {"kernel": "gaussians", "impl": impl, "mode": mode, "n": n, "size": size,
                   "device": torch.cuda.get_device_name() if on_gpu else "cpu"}
            try:
                row["ms"] = mean_ms(_step(params, camera, impl, mode), device,
                                     warmup=3 if on_gpu else 0, iters=iters)
                if mode == "fwd":
                    from hi3d.kernels.gaussians import rasterize

                    with torch.no_grad():
                        rgb = rasterize(**params, **camera, impl=impl)[0]
                    if impl == "triton":
                        ours = rgb
                    elif ours is not None:
                        row["max_abs_rgb_diff_vs_triton"] = float((rgb - ours).abs().max())
            except Exception as exc:  # noqa: BLE001 - a missing/unbuildable gsplat is a result
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
            print(row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("results/kernels_gaussians.json"))
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        # Read by @triton.jit, so before the kernels are imported (torch does not import triton).
        os.environ["TRITON_INTERPRET"] = "1"
    rows = bench_gaussians(device, args.n, args.size)
    payload = {"torch": torch.__version__, "rows": rows,
               "note": "" if rows and rows[0]["device"] != "cpu" else
               "cpu: Triton interpreted, tiny size, for the record only (not a speed figure)"}
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
