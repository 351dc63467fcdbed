"""The networks of Hi3D, built from `engine.config` dataclasses."""
from __future__ import annotations

import torch
from torch import nn

from hi3d.engine.config import NETWORK_NAMES, Hi3DConfig
from hi3d.engine.models.aesthetic import AestheticScorer
from hi3d.engine.models.clip import CLIPImageTower
from hi3d.engine.models.depth import DepthModel
from hi3d.engine.models.unet import Hi3DUNet
from hi3d.engine.models.vae import VAEDecoder, VAEEncoder


def build_network(cfg: Hi3DConfig, name: str) -> nn.Module:
    """One network, initialised from the global RNG."""
    make = {
        "clip": lambda: CLIPImageTower(cfg.clip),
        "aesthetic": lambda: AestheticScorer(cfg.aesthetic),
        "vae_encoder": lambda: VAEEncoder(cfg.vae),
        "vae_decoder": lambda: VAEDecoder(cfg.vae),
        "unet1": lambda: Hi3DUNet(cfg.stage1.unet, cfg.num_frames),
        "unet2": lambda: Hi3DUNet(cfg.stage2.unet, cfg.num_frames),
        "depth": lambda: DepthModel(cfg.depth),
    }
    if name not in make:
        raise ValueError(f"unknown network {name!r}; choose one of {NETWORK_NAMES}")
    return make[name]()


def network_seed(seed: int, name: str) -> int:
    """Each network draws its weights from a seed of its own, so that one network can be
    built alone (the export builds one 6 GB UNet at a time) with the weights it has in the
    whole set."""
    return seed * len(NETWORK_NAMES) + NETWORK_NAMES.index(name)


def build_seeded(cfg: Hi3DConfig, name: str, seed: int = 0) -> nn.Module:
    """One network, randomly initialised as `build_networks(cfg, seed)[name]` is."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(network_seed(seed, name))
        return build_network(cfg, name)


def build_networks(cfg: Hi3DConfig, seed: int = 0) -> dict[str, nn.Module]:
    """Every network, randomly initialised from `seed` (reproducibly: the global RNG is untouched)."""
    return {name: build_seeded(cfg, name, seed) for name in NETWORK_NAMES}
