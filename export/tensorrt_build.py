"""TensorRT engines as cached artifacts: profiles read off each ONNX file, engine files
named by what built them, a persistent timing cache, corrupt files rebuilt loudly.

Nothing here imports tensorrt: the build itself is `engine.backends.tensorrt_backend.
build_engine`, passed in as `build` (tests pass their own to exercise the caching).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx

from hi3d.engine.backends.tensorrt_backend import BuildEnv, Profile
from hi3d.engine.errors import InvalidInput
from hi3d.engine.files import atomic_write
from hi3d.export import artifacts
from hi3d.export.specs import ExportSpec

Build = Callable[[Path, Profile, str, bytes], tuple[bytes, bytes]]  # (onnx, profile, precision, cache) -> (engine, cache)
PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class EngineArtifact:
    path: Path
    status: str  # "found cached" or "built (<why>)"
    size_bytes: int
    build_seconds: float  # 0 when found cached


def profile_from_onnx(onnx_path: Path, spec: ExportSpec) -> Profile:
    """The optimization profile for the graph in `onnx_path`: its static dims as they
    are, its symbolic dims from the spec's ranges. Fails when the file and the spec
    disagree (an input missing, a rank or a static size changed, an unknown dim)."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    ranges = spec.dim_ranges
    declared = {t.name: t for t in spec.inputs}
    profile: Profile = {}
    for inp in graph.input:
        if inp.name not in declared:
            raise ValueError(f"{onnx_path}: input {inp.name!r} is not in the {spec.network} spec")
        want = declared[inp.name].shape
        dims = inp.type.tensor_type.shape.dim
        if len(dims) != len(want):
            raise ValueError(f"{onnx_path}: input {inp.name} has rank {len(dims)}, the spec says {len(want)}")
        lo, opt, hi = [], [], []
        for axis, (d, w) in enumerate(zip(dims, want)):
            if d.HasField("dim_value"):
                size = d.dim_value
                if isinstance(w, int) and w != size:
                    raise ValueError(f"{onnx_path}: {inp.name} axis {axis} is {size}, the spec says {w}")
                if isinstance(w, str) and ranges[w].dynamic:
                    raise ValueError(f"{onnx_path}: {inp.name} axis {axis} is fixed at {size}, the spec wants {w} dynamic")
                triple = (size, size, size)
            else:
                if d.dim_param not in ranges:
                    raise ValueError(f"{onnx_path}: {inp.name} axis {axis} is {d.dim_param!r}, not a dim of the spec")
                r = ranges[d.dim_param]
                triple = (r.min, r.opt, r.max)
            for acc, v in zip((lo, opt, hi), triple):
                acc.append(v)
        profile[inp.name] = (tuple(lo), tuple(opt), tuple(hi))
    missing = set(declared) - set(profile)
    if missing:
        raise ValueError(f"{onnx_path}: inputs {sorted(missing)} of the spec are missing from the graph")
    return profile


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def engine_key(onnx_sha256: str, env: BuildEnv, precision: str, profile: Profile) -> dict:
    return {
        "onnx_sha256": onnx_sha256,
        "tensorrt": env.tensorrt_version,
        "gpu": env.gpu_name,
        "precision": precision,
        "profile": {k: [list(s) for s in v] for k, v in sorted(profile.items())},
    }


def engine_path(engines_dir: Path, network: str, key: dict) -> Path:
    """e.g. unet1.fp16.trt10.9.0.34.NVIDIA_H100_80GB_HBM3.onnx-3fa1c2d4e5b6.prof-a1b2c3d4.plan"""
    profile_hash = artifacts.key_hash(key["profile"])[:8]
    name = (f"{network}.{key['precision']}.trt{_slug(key['tensorrt'])}.{_slug(key['gpu'])}"
            f".onnx-{key['onnx_sha256'][:12]}.prof-{profile_hash}.plan")
    return engines_dir / name


def timing_cache_path(engines_dir: Path, env: BuildEnv) -> Path:
    """One timing cache per (TensorRT version, GPU): timings from elsewhere do not apply."""
    return engines_dir / f"timing_cache.trt{_slug(env.tensorrt_version)}.{_slug(env.gpu_name)}.bin"


def find_engine(spec: ExportSpec, onnx_path: Path, engines_dir: Path, precision: str,
                env: BuildEnv) -> tuple[Path, dict, Profile, artifacts.Verdict]:
    """Where the engine for this ONNX file, precision and GPU is (or would be), its key and
    profile, and whether the file there can be used: the lookup, without building."""
    if precision not in PRECISIONS:
        raise InvalidInput(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    record = artifacts.read_sidecar(onnx_path)
    if record is None or onnx_path.name not in record["files"]:
        raise InvalidInput(f"{onnx_path} has no sidecar: export it first (export/build_engines.py)")
    if artifacts.sha256_file(onnx_path) != record["files"][onnx_path.name]:
        raise InvalidInput(f"{onnx_path} is corrupt (sha256 differs from its sidecar): re-export it first")
    profile = profile_from_onnx(onnx_path, spec)
    key = engine_key(record["files"][onnx_path.name], env, precision, profile)
    path = engine_path(engines_dir, spec.network, key)
    return path, key, profile, artifacts.verify(path, key)


def ensure_engine(
    spec: ExportSpec,
    onnx_path: Path,
    engines_dir: Path,
    precision: str,
    env: BuildEnv,
    build: Build,
    log: Callable[[str], None] = print,
) -> EngineArtifact:
    """The engine for this ONNX file, precision and GPU: reused if its sidecar vouches
    for it, rebuilt (saying why) if it is missing, stale or corrupt."""
    path, key, profile, verdict = find_engine(spec, onnx_path, engines_dir, precision, env)
    if verdict.ok:
        log(f"[{spec.network}] engine found cached: {path.name}")
        return EngineArtifact(path, "found cached", path.stat().st_size, 0.0)
    if path.exists():
        log(f"[{spec.network}] cached engine not used: {verdict.reason}; rebuilding")
    artifacts.invalidate(path)
    log(f"[{spec.network}] building {precision} engine, profile {profile}")
    cache_file = timing_cache_path(engines_dir, env)
    start = time.perf_counter()
    plan, cache = build(onnx_path, profile, precision, cache_file.read_bytes() if cache_file.exists() else b"")
    seconds = time.perf_counter() - start
    atomic_write(path, plan)
    atomic_write(cache_file, cache)
    artifacts.write_sidecar(path, key, [path], extra={"build_seconds": seconds})
    log(f"[{spec.network}] engine built in {seconds:.1f}s: {path.name}")
    return EngineArtifact(path, f"built ({verdict.reason})", path.stat().st_size, seconds)
