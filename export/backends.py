"""The one registry of backends, and the one way from a backend name to `Networks`.

The CLI, the benchmarks and the served models all choose a backend here. It sits above
`hi3d.engine` because two backends run exported files: onnxruntime and tensorrt first
bring their ONNX graphs (and engines) up to date in the artifacts folder, exactly as
export/build_engines.py would, saying what they export or build.

Adding a backend is one entry in BACKENDS: a name, a one-line summary, how the served
network models run it, and a `build(request) -> Networks` function.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from hi3d.engine.backends import DTYPES, Networks, default_dtype
from hi3d.engine.config import Hi3DConfig, preset
from hi3d.engine.errors import InvalidInput
from hi3d.engine.memory_plans import RESIDENT, MemoryPlan, check_plan_name


@dataclass(frozen=True)
class NetworkRequest:
    """Everything a backend may need to build the runners of one configuration."""

    cfg: Hi3DConfig
    device: torch.device
    dtype: torch.dtype  # torch / compiled compute in it; tensorrt builds fp16 engines when it is half
    weights: Path | None = None  # official checkpoints; None: seeded random weights
    artifacts: Path = Path("build")  # where build_engines.py writes (onnxruntime / tensorrt)
    modules: dict[str, nn.Module] | None = field(default=None, compare=False)  # loaded once, shared
    threads: int = 0  # ONNX Runtime intra-op threads (0: its default)
    cuda_graphs: bool = False  # tensorrt: replay each call shape from a captured graph
    log: Callable[[str], None] = field(default=print, compare=False)
    memory_plan: MemoryPlan = RESIDENT  # engine/memory_plans.py; `auto` is resolved before this


@dataclass(frozen=True)
class Backend:
    name: str
    summary: str
    served_as: str  # Triton platform of the network models: "python" runs our torch model.py
    build: Callable[[NetworkRequest], Networks]


def _modules(r: NetworkRequest) -> dict[str, nn.Module]:
    from hi3d.engine.backends.torch_backend import load_modules

    return r.modules if r.modules is not None else load_modules(r.cfg, r.weights)


def _torch(r: NetworkRequest) -> Networks:
    from hi3d.engine.backends.torch_backend import torch_networks

    return torch_networks(_modules(r), r.device, r.dtype, plan=r.memory_plan)


def _compiled(r: NetworkRequest) -> Networks:
    from hi3d.engine.backends.torch_backend import torch_networks

    return torch_networks(_modules(r), r.device, r.dtype, compile=True, plan=r.memory_plan)


def _session_plan(r: NetworkRequest, backend: str) -> MemoryPlan:
    """What of the plan an exported backend can follow: its sessions own their weights (all on
    the device) and their graphs are fixed, so only the pipeline's CFG split and per-frame
    decode apply. Says so rather than ignore the rest."""
    plan = r.memory_plan
    if plan.staged or plan.ff_chunk:
        r.log(f"{backend}: memory plan {plan.name!r} applies only the CFG split and per-frame decode "
              f"(split_cfg={plan.split_cfg}, decode_frames={plan.decode_frames}); every network's weights "
              "stay on the device and the graphs are not chunked")
    return replace(plan, staged=False, ff_chunk=None)


def _onnx_graphs(r: NetworkRequest) -> dict[str, Path]:
    from hi3d.export.artifact_dir import ArtifactDir, ensure_all_onnx

    graphs = ensure_all_onnx(r.cfg, r.weights, ArtifactDir(Path(r.artifacts), r.cfg), log=r.log)
    return {name: a.path for name, a in graphs.items()}


def _onnxruntime(r: NetworkRequest) -> Networks:
    from hi3d.engine.backends.onnxruntime_backend import OnnxRuntimeRunner

    runners = {name: OnnxRuntimeRunner(path, r.device, threads=r.threads) for name, path in _onnx_graphs(r).items()}
    return Networks(**runners, device=r.device, dtype=torch.float32,  # the graphs take fp32
                    plan=_session_plan(r, "onnxruntime"))


def _tensorrt(r: NetworkRequest) -> Networks:
    from hi3d.engine.backends.tensorrt_backend import (
        TensorRTRunner,
        build_engine,
        current_env,
        unavailable_reason,
    )
    from hi3d.export.artifact_dir import ArtifactDir
    from hi3d.export.specs import export_specs
    from hi3d.export.tensorrt_build import ensure_engine

    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"the tensorrt backend cannot run here: {reason}")
    graphs = _onnx_graphs(r)
    precision = "fp16" if r.dtype in (torch.float16, torch.bfloat16) else "fp32"
    env, specs = current_env(r.device), export_specs(r.cfg)
    engines = ArtifactDir(Path(r.artifacts), r.cfg).engines_dir
    runners = {}
    for name, onnx_path in graphs.items():
        plan = ensure_engine(specs[name], onnx_path, engines, precision, env, build_engine, r.log)
        runners[name] = TensorRTRunner(plan.path, r.device, cuda_graphs=r.cuda_graphs)
    return Networks(**runners, device=r.device, dtype=torch.float32,  # fp32 I/O, fp16 inside
                    plan=_session_plan(r, "tensorrt"))


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "PyTorch eager, the reference of every parity test", "python", _torch),
    Backend("compiled", "torch.compile (Inductor, max-autotune without CUDA graphs)", "python", _compiled),
    Backend("onnxruntime", "ONNX Runtime on the exported fp32 graphs", "onnxruntime_onnx", _onnxruntime),
    Backend("tensorrt", "TensorRT engines built from those graphs (fp16 with a half dtype)", "tensorrt_plan", _tensorrt),
)}


def backend_named(name: str) -> Backend:
    if name not in BACKENDS:
        raise InvalidInput(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def make_networks(backend: str, request: NetworkRequest) -> Networks:
    """Runners for every network of `request.cfg` on the backend named `backend`."""
    return backend_named(backend).build(request)


@dataclass(frozen=True)
class EngineOptions:
    """Which networks, from which weights, on which backend, device and dtype: what
    `hi3d generate` and the benchmarks are told, checked once, on construction."""

    preset: str | None = None  # None: "full" with weights, else "tiny"
    weights: Path | None = None  # the official checkpoints' folder; None: seeded random weights
    backend: str = "torch"
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"
    dtype: str | None = None  # a DTYPES name; None: fp16 on CUDA, fp32 on CPU
    artifacts: Path = Path("build")
    memory_plan: str = "resident"  # a PLAN_CHOICES name (engine/memory_plans.py); auto: the fastest that fits

    def __post_init__(self) -> None:
        backend_named(self.backend)
        check_plan_name(self.memory_plan)
        preset(self.preset_name)
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise InvalidInput(f"device must be cpu or cuda, got {self.device!r}") from None
        if device.type not in ("cpu", "cuda"):
            raise InvalidInput(f"device must be cpu or cuda, got {self.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidInput(f"device {self.device}: torch sees no CUDA device")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise InvalidInput(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.weights is not None and not Path(self.weights).is_dir():
            raise InvalidInput(f"weights: {self.weights} is not a directory")
        if self.preset_name == "full" and self.weights is None:
            raise InvalidInput("the full preset needs weights: --weights DIR (the official checkpoints)")

    @property
    def preset_name(self) -> str:
        return self.preset or ("full" if self.weights is not None else "tiny")

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype or default_dtype(self.torch_device)]

    def config(self) -> Hi3DConfig:
        return preset(self.preset_name)

    def plan(self, cfg: Hi3DConfig) -> MemoryPlan:
        """The memory plan; `auto` estimates every plan (a minute on the CPU at full size) and
        takes the fastest that fits the device's free memory now."""
        from hi3d.engine.memory_estimate import resolve_plan

        return resolve_plan(self.memory_plan, cfg, self.torch_device, self.torch_dtype)

    def request(self, cfg: Hi3DConfig, **extra) -> NetworkRequest:
        """A NetworkRequest for `cfg` (e.g. with other steps); `extra`: its optional fields."""
        if "memory_plan" not in extra:  # not setdefault: resolving `auto` runs an estimate
            extra["memory_plan"] = self.plan(cfg)
        return NetworkRequest(cfg, self.torch_device, self.torch_dtype, self.weights, Path(self.artifacts), **extra)

    def networks(self, cfg: Hi3DConfig, **extra) -> Networks:
        return make_networks(self.backend, self.request(cfg, **extra))
