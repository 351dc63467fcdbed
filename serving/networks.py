"""The served networks: their tensor names and shapes in the model repository, and how a
served model rebuilds its one network from the weights file the repository holds.

Tensor names follow the export specs (export/specs.py), so an ONNX file or a TensorRT
plan drops into the repository under the same config. Shapes are Triton `dims`; -1 is
dynamic. The UNets are batched by Triton (max_batch_size > 0), so their dims omit the
batch dimension; every other network takes its batch dimension explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.backends import NETWORK_NAMES as NETWORKS  # torch only: keeps diffusers out of the CLI
from engine.config import Hi3DConfig

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
    """Input/output names and dims of one network, in the Runner's argument order."""
    if name in BATCHED:
        stage = cfg.stage1 if name == "unet1" else cfg.stage2
        u, f = stage.unet, cfg.num_frames
        h = stage.resolution // cfg.latent_factor
        return NetworkIO(
            inputs=(
                TensorIO("sample", (f, u.in_channels, h, h)),
                TensorIO("c_noise", (1,), reshape=()),  # [B] per call
                TensorIO("context", (1, u.cross_attention_dim)),
                TensorIO("vector", (u.vector_dim,)),
            ),
            outputs=(TensorIO("v_pred", (f, u.out_channels, h, h)),),
            batched=True,
        )
    if name in ("clip", "aesthetic"):
        s = cfg.clip.image_size if name == "clip" else cfg.aesthetic.clip.image_size
        out = TensorIO("image_embeds", (-1, cfg.clip.embed_dim)) if name == "clip" else TensorIO("score", (-1, 1))
        return NetworkIO((TensorIO("pixels", (-1, 3, s, s)),), (out,), batched=False)
    c = cfg.vae.latent_channels
    if name == "vae_encoder":
        lat = TensorIO("mean", (-1, c, -1, -1)), TensorIO("logvar", (-1, c, -1, -1))
        return NetworkIO((TensorIO("image", (-1, 3, -1, -1)),), lat, batched=False)
    if name == "vae_decoder":
        return NetworkIO((TensorIO("latent", (-1, c, -1, -1)),), (TensorIO("image", (-1, 3, -1, -1)),), batched=False)
    if name == "depth":
        from engine import conditioning as cond  # imports diffusers: only when asked

        s = cond.depth_input_size(cfg.stage2.resolution, cfg.depth_scale)
        return NetworkIO((TensorIO("pixels", (-1, 3, s, s)),), (TensorIO("disparity", (-1, s, s)),), batched=False)
    raise ValueError(f"unknown network {name!r}; choose one of {NETWORKS}")


def load_network(cfg: Hi3DConfig, name: str, weights: Path, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Rebuild `name` and load the state dict build-repo wrote, on `device` in `dtype`."""
    from engine.models import build_network  # imports diffusers: only inside the served model

    module = build_network(cfg, name)
    module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    module = module.to(device=device, dtype=dtype).eval()
    if name == "aesthetic":
        module.mlp.float()  # as engine.backends.torch_backend: the aesthetic MLP runs in fp32 upstream
    return module
