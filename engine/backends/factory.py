"""One entry point from a backend name to `Networks`, whichever backend it is."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from hi3d.engine.backends import BACKENDS, Networks
from hi3d.engine.config import Hi3DConfig


def make_networks(
    backend: str,
    cfg: Hi3DConfig,
    weights: Path | None,
    device: torch.device,
    dtype: torch.dtype,
    artifacts_dir: Path | None = None,
    log: Callable[[str], None] = print,
    cuda_graphs: bool = False,
) -> Networks:
    """Runners for every network on `backend`.

    torch / compiled: the modules in `dtype` on `device`.
    onnxruntime: the fp32 ONNX graphs in `artifacts_dir` (as written by
      export/build_engines.py); missing or stale ones are exported there first, with a
      message. Networks.dtype is float32 (what the graphs take), whatever `dtype` says.
    tensorrt: engines built from those graphs in fp16 when `dtype` is half, else fp32
      (found cached or built, with a message); fp32 I/O; needs tensorrt and CUDA.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    device = torch.device(device)
    if backend in ("torch", "compiled"):
        from hi3d.engine.backends.torch_backend import load_modules, torch_networks

        return torch_networks(load_modules(cfg, weights), device, dtype, compile=backend == "compiled")
    if artifacts_dir is None:
        raise ValueError(f"the {backend} backend needs an artifacts directory (where build_engines.py writes)")
    if backend == "tensorrt":
        from hi3d.engine.backends.tensorrt_backend import unavailable_reason

        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"the tensorrt backend cannot run here: {reason}")
    from hi3d.export.artifact_dir import ArtifactDir, ensure_all_onnx

    out = ArtifactDir(Path(artifacts_dir), cfg)
    graphs = ensure_all_onnx(cfg, weights, out, log=log)
    if backend == "onnxruntime":
        from hi3d.engine.backends.onnxruntime_backend import OnnxRuntimeRunner

        runners = {name: OnnxRuntimeRunner(a.path, device) for name, a in graphs.items()}
        return Networks(**runners, device=device, dtype=torch.float32)

    from hi3d.engine.backends.tensorrt_backend import TensorRTRunner, build_engine, current_env
    from hi3d.export.specs import export_specs
    from hi3d.export.tensorrt_build import ensure_engine

    precision = "fp16" if dtype in (torch.float16, torch.bfloat16) else "fp32"
    env, specs = current_env(device), export_specs(cfg)
    runners = {}
    for name, a in graphs.items():
        plan = ensure_engine(specs[name], a.path, out.engines_dir, precision, env, build_engine, log)
        runners[name] = TensorRTRunner(plan.path, device, cuda_graphs=cuda_graphs)
    return Networks(**runners, device=device, dtype=torch.float32)
