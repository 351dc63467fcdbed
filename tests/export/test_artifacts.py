"""Artifact keys, sidecars, corruption detection and the engine cache (no TensorRT needed:
the build step is replaced by a deterministic function of its inputs)."""
import dataclasses
import shutil
from pathlib import Path

import pytest

from hi3d.engine.backends.tensorrt_backend import BuildEnv
from hi3d.engine.config import tiny
from hi3d.engine.models import build_networks
from hi3d.export import artifacts
from hi3d.export.onnx_export import ensure_onnx, export_key, weights_fingerprint
from hi3d.export.specs import Dim, export_specs, network_config
from hi3d.export.tensorrt_build import (
    engine_path,
    ensure_engine,
    profile_from_onnx,
    timing_cache_path,
)

H100 = BuildEnv("10.9.0.34", "NVIDIA H100 80GB HBM3")


class FakeBuild:
    """Stands in for TensorRT: a plan that depends on every input; records the caches it got."""

    def __init__(self):
        self.caches_seen = []

    def __call__(self, onnx_path, profile, precision, cache):
        self.caches_seen.append(cache)
        plan = f"{artifacts.sha256_file(onnx_path)}|{sorted(profile.items())}|{precision}".encode()
        return plan, cache + precision.encode()


def _onnx(out, name):
    return Path(out) / "tiny" / "onnx" / f"{name}.onnx"


def test_profiles_read_off_every_onnx_file_match_the_specs(tiny_build):
    out, _ = tiny_build
    for name, spec in export_specs(tiny()).items():
        assert profile_from_onnx(_onnx(out, name), spec) == spec.profile(), name


def test_profile_rejects_a_spec_the_graph_disagrees_with(tiny_build):
    out, _ = tiny_build
    spec = export_specs(tiny())["unet1"]
    wider = dataclasses.replace(spec, inputs=(dataclasses.replace(spec.inputs[0], shape=("B", 16, 9, 8, 8)),) + spec.inputs[1:])
    with pytest.raises(ValueError, match="sample axis 2 is 8, the spec says 9"):
        profile_from_onnx(_onnx(out, "unet1"), wider)
    unknown = dataclasses.replace(spec, dims=(("X", Dim(1, 2, 8, 2)),))
    with pytest.raises(ValueError, match="'B', not a dim of the spec"):
        profile_from_onnx(_onnx(out, "unet1"), unknown)


def test_engine_cache_built_then_found_then_rebuilt_when_corrupt(tiny_build, tmp_path, capsys):
    out, _ = tiny_build
    spec, onnx_path = export_specs(tiny())["depth"], _onnx(out, "depth")
    build = FakeBuild()
    first = ensure_engine(spec, onnx_path, tmp_path, "fp16", H100, build)
    assert first.status.startswith("built") and len(build.caches_seen) == 1
    assert ".fp16.trt10.9.0.34.NVIDIA_H100_80GB_HBM3.onnx-" in first.path.name
    again = ensure_engine(spec, onnx_path, tmp_path, "fp16", H100, build)
    assert again.status == "found cached" and again.path == first.path and len(build.caches_seen) == 1
    # A flipped byte in the plan: detected by its sidecar hash, rebuilt, said so.
    data = bytearray(first.path.read_bytes())
    data[0] ^= 0xFF
    first.path.write_bytes(bytes(data))
    rebuilt = ensure_engine(spec, onnx_path, tmp_path, "fp16", H100, build)
    assert "corrupt" in rebuilt.status and "cached engine not used" in capsys.readouterr().out
    assert artifacts.verify(rebuilt.path, artifacts.read_sidecar(rebuilt.path)["key"]).ok
    # The timing cache persists across builds (and is per TensorRT version + GPU).
    assert build.caches_seen[1] == b"fp16"
    assert timing_cache_path(tmp_path, H100).read_bytes() == b"fp16fp16"


def test_engine_names_encode_what_built_them(tiny_build, tmp_path):
    out, _ = tiny_build
    spec, onnx_path = export_specs(tiny())["depth"], _onnx(out, "depth")
    build = FakeBuild()
    paths = {
        ensure_engine(spec, onnx_path, tmp_path, precision, env, build).path
        for precision in ("fp16", "fp32")
        for env in (H100, BuildEnv("10.9.0.34", "NVIDIA H200"), BuildEnv("10.3.0", "NVIDIA H100 80GB HBM3"))
    }
    assert len(paths) == 6 and len(build.caches_seen) == 6
    key = artifacts.read_sidecar(next(iter(paths)))["key"]
    assert engine_path(tmp_path, "depth", key) in paths


def test_engine_build_refuses_a_corrupt_onnx(tiny_build, tmp_path):
    out, _ = tiny_build
    src = _onnx(out, "aesthetic")
    onnx_path = tmp_path / src.name
    shutil.copy(src, onnx_path)
    shutil.copy(artifacts.sidecar_path(src), artifacts.sidecar_path(onnx_path))
    with open(onnx_path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="corrupt"):
        ensure_engine(export_specs(tiny())["aesthetic"], onnx_path, tmp_path, "fp16", H100, FakeBuild())


def test_corrupt_or_stale_onnx_is_reexported(tiny_build, tmp_path, capsys):
    out, _ = tiny_build
    cfg = tiny()
    spec, src = export_specs(cfg)["clip"], _onnx(out, "clip")
    path = tmp_path / src.name
    shutil.copy(src, path)
    shutil.copy(artifacts.sidecar_path(src), artifacts.sidecar_path(path))
    key = export_key(spec, network_config(cfg, "clip"), weights_fingerprint(None, cfg))
    clip = lambda: build_networks(cfg, cfg.seed_weights)["clip"]  # noqa: E731
    assert ensure_onnx(spec, key, path, clip).status == "found cached"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    redone = ensure_onnx(spec, key, path, clip)
    assert redone.status.startswith("built") and "corrupt" in capsys.readouterr().out
    assert artifacts.verify(path, key).ok
    other = dict(key, weights="someone-else's")
    assert "different configuration (changed: weights)" in artifacts.verify(path, other).reason
