"""GPU check: export each preset's networks with torch on CUDA, ONNX Runtime parity,
and (where tensorrt is installed) fp16 engines vs torch on CUDA. Writes one JSON per
preset under --results.

    python export/gpu_parity.py --presets tiny,full --out build/ --results results/export

Full-size networks are exported one at a time (the UNets are ~6 GB in fp32: external
data). Exit status 1 when any parity check failed, else 0 (TensorRT being absent is
recorded in the JSON, not an error: the lent GPU machines have no TensorRT).
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

from hi3d.engine.backends.tensorrt_backend import unavailable_reason
from hi3d.engine.config import preset
from hi3d.engine.files import atomic_write_json
from hi3d.export import artifacts
from hi3d.export.artifact_dir import ArtifactDir, OnnxExporter, parse_networks


def _trt_vs_torch(spec, module, plan: Path, device) -> dict:
    from hi3d.engine.backends.tensorrt_backend import TensorRTRunner

    runner = TensorRTRunner(plan, device)
    worst = 0.0
    for point in ("min", "opt"):
        inputs = [x.to(device) for x in spec.sample_inputs(spec.sizes(point), seed=3)]
        with torch.inference_mode():
            ref = module(*inputs)
        got = runner(*inputs)
        pairs = zip(got if isinstance(got, tuple) else (got,), ref if isinstance(ref, tuple) else (ref,))
        worst = max([worst] + [float((g.float() - r.float()).abs().max()) for g, r in pairs])
    return {"trt_fp16_vs_torch_fp32_max_abs_err": worst}


def run_preset(name: str, out: Path, networks: tuple[str, ...], device: torch.device) -> dict:
    cfg = preset(name)
    exporter = OnnxExporter(cfg, None, ArtifactDir(out, cfg), device=device)
    trt_reason = unavailable_reason()
    record = {"preset": name, "gpu": torch.cuda.get_device_name(device), "torch": torch.__version__,
              "tensorrt": trt_reason or "available", "models": {}}
    for net in networks:
        row: dict = {}
        start = time.perf_counter()
        try:
            a = exporter.ensure(net)
            row.update(onnx_status=a.status, onnx_bytes=a.size_bytes,
                       parity=(artifacts.read_sidecar(a.path) or {}).get("parity"))
            if trt_reason is None:
                from hi3d.engine.backends.tensorrt_backend import (
                    build_engine,
                    current_env,
                )
                from hi3d.export.tensorrt_build import ensure_engine

                e = ensure_engine(exporter.specs[net], a.path, exporter.out.engines_dir, "fp16",
                                  current_env(device), build_engine)
                row.update(engine=e.path.name, engine_bytes=e.size_bytes, build_seconds=e.build_seconds)
                row.update(_trt_vs_torch(exporter.specs[net], exporter.module(net), e.path, device))
        except Exception as err:  # one network failing must not hide the others' results
            row.update(error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=5))
        row["seconds"] = time.perf_counter() - start
        record["models"][net] = row
        print(f"[{name}/{net}] {'FAILED: ' + row['error'] if 'error' in row else 'ok'} ({row['seconds']:.0f}s)", flush=True)
        if net in exporter.modules:
            exporter.modules[net].to("cpu")
        torch.cuda.empty_cache()
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="tiny,full")
    p.add_argument("--models", help="comma-separated networks (default: all)")
    p.add_argument("--out", type=Path, default=Path("build"))
    p.add_argument("--results", type=Path, required=True)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device; this script is the GPU check", file=sys.stderr)
        return 2
    # fp32 parity needs fp32 convolutions: cuDNN would otherwise use TF32 (~1e-3 relative).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    failed = False
    for name in args.presets.split(","):
        record = run_preset(name, args.out, parse_networks(args.models), torch.device("cuda"))
        failed |= any("error" in m for m in record["models"].values())
        path = args.results / f"export_{name}.json"
        atomic_write_json(path, record)
        print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
