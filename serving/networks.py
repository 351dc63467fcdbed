"""The served networks: their tensor names and shapes in the model repository, and how a
served model rebuilds its one network from the weights file the repository holds.

Tensor names and shapes come from the export specs (export/specs.py), so an ONNX file or
a TensorRT plan drops into the repository under the same config. Shapes are Triton `dims`; -1 is
dynamic. The UNets are batched by Triton (max_batch_size > 0), so their dims omit the
batch dimension; every other network takes its batch dimension explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hi3d.engine.config import NETWORK_NAMES as NETWORKS
from hi3d.engine.config import Hi3DConfig
from hi3d.engine.errors import InvalidInput

BATCHED = ("unet1", "unet2")  # the only networks concurrent requests share calls of
WEIGHTS_FILE = "weights.pt"


@dataclass(frozen=True)
class TensorIO:
    name: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None  # Triton's reshape: what the backend sees per batch item


@dataclass(frozen=True)
class NetworkIO:
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    batched: bool


def network_io(cfg: Hi3DConfig, name: str) -> NetworkIO:
    """Input/output names and dims of one network, in the Runner's argument order, read off
    its export spec so that the repository and the ONNX / TensorRT files cannot disagree."""
    from hi3d.export.specs import (
        export_specs,  # imports diffusers: only when a repository is built or served
    )

    specs = export_specs(cfg)
    if name not in specs:
        raise InvalidInput(f"unknown network {name!r}; choose one of {NETWORKS}")
    spec, batched = specs[name], name in BATCHED

    def io(t) -> TensorIO:
        dims = tuple(-1 if isinstance(d, str) else d for d in t.shape)
        if not batched:
            return TensorIO(t.name, dims)
        # Triton owns the leading batch axis; a per-call scalar ([B]) needs one dim of its own.
        return TensorIO(t.name, dims[1:]) if len(dims) > 1 else TensorIO(t.name, (1,), reshape=())

    return NetworkIO(tuple(map(io, spec.inputs)), tuple(map(io, spec.outputs)), batched)


def load_network(cfg: Hi3DConfig, name: str, weights: Path, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Rebuild `name` and load the state dict build-repo wrote, on `device` in `dtype`."""
    from hi3d.engine.models import (
        build_network,  # imports diffusers: only inside the served model
    )

    module = build_network(cfg, name)
    module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    module = module.to(device=device, dtype=dtype).eval()
    if name == "aesthetic":
        module.mlp.float()  # as engine.backends.torch_backend: the aesthetic MLP runs in fp32 upstream
    return module
