"""One small interface between the pipeline and whatever executes a network.

A backend turns a configuration (and optionally official weights) into `Networks`: one
`Runner` per network. A runner is a callable from tensors to tensors; the pipeline only
calls runners and never learns whether torch, ONNX Runtime or TensorRT is behind them.
The runners live here; the registry that picks one by name is `hi3d.export.backends`
(above this layer, because two backends run exported files).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Protocol

import torch
from torch import Tensor

from hi3d.engine.config import NETWORK_NAMES
from hi3d.engine.memory_plans import RESIDENT, MemoryPlan

# The compute dtypes a user may name (CLI, bench, serving): the one table of them.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def default_dtype(device: torch.device) -> str:
    """fp16 on CUDA (what the targets are set for), fp32 on CPU (where half is slow)."""
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


class Runner(Protocol):
    """Runs one network. Inputs and outputs are torch tensors on the pipeline's device.

    Signatures (shapes per network; batch dims are dynamic):
      clip(pixels [N,3,S,S]) -> [N, D]
      aesthetic(pixels [N,3,S,S]) -> [N, 1]
      vae_encoder(image [N,3,H,W]) -> (mean [N,4,H/8,W/8], logvar [N,4,H/8,W/8])
      vae_decoder(latent [N,4,h,w]) -> image [N,3,8h,8w]
      unet1 / unet2(sample [B,F,C,h,w], c_noise [B], context [B,1,D], vector [B,V]) -> [B,F,4,h,w]
      depth(pixels [N,3,S,S]) -> disparity [N,S,S]
    """

    def __call__(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]: ...


class Placement(Protocol):
    """Where the networks' weights live. The pipeline announces each stage before running it;
    a backend that can move weights (torch) brings that stage's networks onto the device."""

    def enter(self, stage: str) -> None: ...


class AllResident:
    """Every network stays where the backend put it (ONNX Runtime and TensorRT sessions own
    their weights)."""

    def enter(self, stage: str) -> None:
        pass


@dataclass
class Networks:
    clip: Runner
    aesthetic: Runner
    vae_encoder: Runner
    vae_decoder: Runner
    unet1: Runner
    unet2: Runner
    depth: Runner
    device: torch.device
    dtype: torch.dtype  # what the runners compute in; the pipeline casts inputs to it
    plan: MemoryPlan = RESIDENT  # the pipeline follows its CFG split and decode chunking
    placement: Placement = field(default_factory=AllResident)

    def runners(self) -> dict[str, Runner]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in NETWORK_NAMES}
