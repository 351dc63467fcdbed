"""The networks of Hi3D, built from `engine.config` dataclasses."""
from __future__ import annotations

import torch
from torch import nn

from engine.config import Hi3DConfig
from engine.models.aesthetic import AestheticScorer
from engine.models.clip import CLIPImageTower
from engine.models.depth import DepthModel
from engine.models.unet import Hi3DUNet
from engine.models.vae import VAEDecoder, VAEEncoder


def build_networks(cfg: Hi3DConfig, seed: int = 0) -> dict[str, nn.Module]:
    """Every network, randomly initialised from `seed` (reproducibly: the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {
            "clip": CLIPImageTower(cfg.clip),
            "aesthetic": AestheticScorer(cfg.aesthetic),
            "vae_encoder": VAEEncoder(cfg.vae),
            "vae_decoder": VAEDecoder(cfg.vae),
            "unet1": Hi3DUNet(cfg.stage1.unet, cfg.num_frames),
            "unet2": Hi3DUNet(cfg.stage2.unet, cfg.num_frames),
            "depth": DepthModel(cfg.depth),
        }
