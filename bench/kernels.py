"""Kernel benchmarks: hash-grid encoding (ours vs tiny-cuda-nn) and the Gaussian rasterizer.

    python -m hi3d.bench.kernels [--device cpu|cuda] [--out results/kernels.json]

On CUDA: the default hash grid (16 levels x 2 features, 2**19 rows) on 2**18 points,
forward, forward+backward to the table, and forward+backward to table and positions, for
our Triton and CUDA (CuPy) kernels, tiny-cuda-nn when installed, and the torch reference.
On CPU (for the record only): the Triton kernels under TRITON_INTERPRET=1 vs the torch
reference at a tiny size. Prints a table and writes JSON (atomically).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Callable

from hi3d.bench.common import mean_ms
from hi3d.engine.files import atomic_write_json

MODES = ("fwd", "fwd+bwd", "fwd+bwd+dx")


def _step(grid, x, mode: str) -> Callable[[], None]:
    import torch

    def run() -> None:
        if mode == "fwd":
            with torch.no_grad():
                grid(x)
            return
        xi = x.detach().requires_grad_(mode == "fwd+bwd+dx")
        grid(xi).sum().backward()
        grid.zero_grad(set_to_none=True)

    return run


def bench_hashgrid(device: str) -> list[dict]:
    import torch

    from hi3d.kernels.hashgrid import HashGrid, HashGridConfig

    if device == "cuda":
        cfg, n_points, warmup, iters = HashGridConfig(), 2**18, 5, 50
        impls = ["triton", "torch"]
        if importlib.util.find_spec("cupy") is not None:
            impls.insert(1, "cuda")
        else:
            print("hashgrid: cupy not installed, skipping impl=cuda")
        if importlib.util.find_spec("tinycudann") is not None:
            impls.append("tcnn")
        else:
            print("hashgrid: tinycudann not installed, skipping impl=tcnn")
    else:
        cfg = HashGridConfig(n_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32)
        n_points, warmup, iters, impls = 256, 1, 2, ["triton", "torch"]
    x = torch.rand(n_points, 3, device=device, generator=torch.Generator(device).manual_seed(0))
    rows = []
    for impl in impls:
        torch.manual_seed(0)
        grid = HashGrid(cfg, impl=impl).to(device)
        for mode in MODES:
            ms = mean_ms(_step(grid, x, mode), device, warmup, iters)
            rows.append({"kernel": "hashgrid", "impl": impl, "mode": mode, "ms": ms,
                         "points": n_points, "levels": cfg.n_levels,
                         "log2_hashmap_size": cfg.log2_hashmap_size,
                         "mpoints_per_s": n_points / ms / 1e3})
    return rows


def _gaussian_rows(device: str) -> list[dict] | None:
    if importlib.util.find_spec("hi3d.bench.kernels_gaussians") is None:
        print("gaussians: bench/kernels_gaussians.py not found, skipping")
        return None
    from hi3d.bench.kernels_gaussians import bench_gaussians

    return bench_gaussians(device=device)


def _print_table(rows: list[dict]) -> None:
    print(f"{'kernel':<10} {'impl':<8} {'mode':<12} {'ms':>10} {'Mpts/s':>10}")
    for r in rows:
        rate = f"{r['mpoints_per_s']:>10.3g}" if "mpoints_per_s" in r else ""
        print(f"{r.get('kernel', '?'):<10} {r.get('impl', '?'):<8} {r.get('mode', ''):<12} "
              f"{r.get('ms', float('nan')):>10.3f} {rate}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--out", type=Path, default=Path("results/kernels.json"))
    args = parser.parse_args(argv)

    if args.device == "cpu" or args.device is None and not _cuda_available():
        # Must be set before the Triton kernels are imported (read by @triton.jit).
        os.environ["TRITON_INTERPRET"] = "1"
        device = "cpu"
    else:
        device = "cuda"
        if not _cuda_available():
            parser.error("--device cuda: no CUDA device available")
    import torch
    import triton

    rows = bench_hashgrid(device)
    gaussians = _gaussian_rows(device)
    _print_table(rows + [r for r in gaussians or [] if isinstance(r, dict)])
    payload = {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "triton": triton.__version__,
        "note": "cpu: Triton interpreted (TRITON_INTERPRET=1), for the record only" if device == "cpu" else "",
        "hashgrid": rows, "gaussians": gaussians,
    }
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
