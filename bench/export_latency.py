"""Per-network latency: torch eager vs ONNX Runtime, on CPU, in one run (ratios only
compare numbers measured side by side on the same machine and load).

    python -m hi3d.bench.export_latency --preset tiny --out results/export_latency.json
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from hi3d.engine.backends.onnxruntime_backend import OnnxRuntimeRunner
from hi3d.engine.backends.torch_backend import TorchRunner
from hi3d.engine.config import PRESETS, preset
from hi3d.engine.files import atomic_write_json
from hi3d.export.artifact_dir import ArtifactDir, OnnxExporter, parse_networks


def time_ms(fn, inputs, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn(*inputs)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn(*inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--models", help="comma-separated networks (default: all)")
    p.add_argument("--artifacts", type=Path, default=Path("build"), help="ONNX files (exported here if missing)")
    p.add_argument("--point", choices=("min", "opt", "max"), default="opt", help="which profile shapes to time")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="for both torch and ONNX Runtime")
    p.add_argument("--out", type=Path, help="JSON results file")
    args = p.parse_args(argv)
    cfg = preset(args.preset)
    try:
        names = parse_networks(args.models)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    exporter = OnnxExporter(cfg, None, ArtifactDir(args.artifacts, cfg), log=lambda s: print(s, file=sys.stderr))
    rows = []
    for name in names:
        path = exporter.ensure(name).path
        spec = exporter.specs[name]
        inputs = spec.sample_inputs(spec.sizes(args.point))
        torch_ms = time_ms(TorchRunner(exporter.module(name), torch.float32), inputs, args.warmup, args.iters)
        ort_ms = time_ms(OnnxRuntimeRunner(path, torch.device("cpu"), threads=args.threads), inputs, args.warmup, args.iters)
        rows.append({"model": name, "shapes": [list(x.shape) for x in inputs], "torch_ms": torch_ms,
                     "onnxruntime_ms": ort_ms, "speedup": torch_ms / ort_ms})
    print(f"{'model':<12} {'torch ms':>10} {'ORT ms':>10} {'torch/ORT':>10}   ({cfg.name}, {args.point} shapes, CPU, {args.threads} threads)")
    for r in rows:
        print(f"{r['model']:<12} {r['torch_ms']:>10.2f} {r['onnxruntime_ms']:>10.2f} {r['speedup']:>10.2f}")
    if args.out:
        record = {"preset": cfg.name, "point": args.point, "device": "cpu", "threads": args.threads,
                  "torch": torch.__version__, "iters": args.iters, "models": rows}
        atomic_write_json(args.out, record)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
