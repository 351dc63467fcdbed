"""Where one configuration's exported artifacts live, and bringing them up to date.

    <root>/<preset>/onnx/<network>.onnx (+ .onnx.json sidecar, + .onnx.data over 2 GB)
    <root>/<preset>/engines/<network>.<precision>.trt<ver>.<gpu>.onnx-<sha>.prof-<hash>.plan
    <root>/<preset>/engines/timing_cache.trt<ver>.<gpu>.bin

The sidecars carry the full keys (configuration, weights, versions), so a folder shared
by several configurations or weights never serves a file built for another one.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hi3d.engine.config import NETWORK_NAMES, Hi3DConfig
from hi3d.engine.errors import InvalidInput
from hi3d.export.onnx_export import (
    OnnxArtifact,
    ensure_onnx,
    export_key,
    weights_fingerprint,
)
from hi3d.export.specs import export_specs, network_config


@dataclass(frozen=True)
class ArtifactDir:
    root: Path
    cfg: Hi3DConfig

    @property
    def base(self) -> Path:
        return Path(self.root) / self.cfg.name

    def onnx_path(self, network: str) -> Path:
        return self.base / "onnx" / f"{network}.onnx"

    @property
    def engines_dir(self) -> Path:
        return self.base / "engines"


def parse_networks(names: str | Sequence[str] | None) -> tuple[str, ...]:
    """'unet1,vae_decoder' (or a list, or None for all) -> validated names in pipeline order."""
    if names is None:
        return NETWORK_NAMES
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    unknown = [n for n in wanted if n not in NETWORK_NAMES]
    if unknown or not wanted:
        raise InvalidInput(f"unknown network name(s) {unknown or wanted}; choose from {', '.join(NETWORK_NAMES)}")
    return tuple(n for n in NETWORK_NAMES if n in wanted)


def check_weights_dir(weights: Path | None) -> None:
    if weights is None:
        return
    if not Path(weights).is_dir():
        raise InvalidInput(f"weights directory not found: {weights}")
    if not any(Path(weights).iterdir()):
        raise InvalidInput(f"weights directory is empty: {weights}")


class OnnxExporter:
    """Brings ONNX files up to date one network at a time; a network's torch module is
    built (and loaded) only when its export is needed, never when its file is cached."""

    def __init__(
        self,
        cfg: Hi3DConfig,
        weights: Path | None,
        out: ArtifactDir,
        device: torch.device = torch.device("cpu"),
        parity_points: tuple[str, ...] = ("min", "opt"),
        log: Callable[[str], None] = print,
    ):
        check_weights_dir(weights)
        self.cfg, self.weights, self.out, self.device = cfg, weights, out, torch.device(device)
        self.parity_points, self.log = parity_points, log
        self.specs = export_specs(cfg)
        self.weights_id = weights_fingerprint(weights, cfg)

    def module(self, name: str) -> nn.Module:
        """The torch module of `name` in fp32 on the export device, built alone and held by
        nobody else, so the export frees it once traced (a full UNet is 6 GB): with random
        weights from its own seed, with official weights loaded into it alone (the other
        networks in the same checkpoint file are skipped)."""
        from hi3d.engine.checkpoints import load_official_weights
        from hi3d.engine.models import build_seeded

        module = build_seeded(self.cfg, name, self.cfg.seed_weights)
        if self.weights is not None:
            load_official_weights(self.cfg, {name: module}, Path(self.weights))
        return module.to(device=self.device, dtype=torch.float32).eval()

    def ensure(self, name: str) -> OnnxArtifact:
        """Export (fp32, on the device) unless a valid cached file exists; parity-checked.
        Raises ParityError naming the worst element when ONNX Runtime disagrees."""
        key = export_key(self.specs[name], network_config(self.cfg, name), self.weights_id)
        return ensure_onnx(self.specs[name], key, self.out.onnx_path(name), lambda: self.module(name),
                           self.parity_points, self.log)


def ensure_all_onnx(cfg: Hi3DConfig, weights: Path | None, out: ArtifactDir,
                    networks: Sequence[str] = NETWORK_NAMES, log: Callable[[str], None] = print) -> dict[str, OnnxArtifact]:
    exporter = OnnxExporter(cfg, weights, out, log=log)
    return {name: exporter.ensure(name) for name in networks}
