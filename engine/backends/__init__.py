"""One small interface between the pipeline and whatever executes a network.

A backend turns a configuration (and optionally official weights) into `Networks`: one
`Runner` per network. A runner is a callable from tensors to tensors; the pipeline only
calls runners and never learns whether torch, ONNX Runtime or TensorRT is behind them.
The runners live here; the registry that picks one by name is `hi3d.export.backends`
(above this layer, because two backends run exported files).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import torch
from torch import Tensor

from hi3d.engine.config import NETWORK_NAMES

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

    def runners(self) -> dict[str, Runner]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in NETWORK_NAMES}
