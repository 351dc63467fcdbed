"""Numerical parity: official sgm / open_clip modules vs ours loaded through the key tables.

tests/fixtures/official_tiny.pt holds what the official classes (tiny sizes, weights from
`seeded_tensor`) computed on seeded inputs; see tests/fixtures/make_official_fixtures.py.
Here the same weights, under their official names, go through our tables into our
diffusers / transformers modules, which must reproduce those outputs.
"""
from __future__ import annotations

import pytest
import torch
from checkpoint_fixtures import FIXTURES, seeded_state_dict

from hi3d.engine.checkpoints.keymap import convert, fill
from hi3d.engine.checkpoints.midas import dpt_keymap
from hi3d.engine.checkpoints.openclip import clip_keymap
from hi3d.engine.checkpoints.sgm import (
    unet_keymap,
    vae_decoder_keymap,
    vae_encoder_keymap,
)
from hi3d.engine.config import tiny
from hi3d.engine.models.clip import CLIPImageTower
from hi3d.engine.models.depth import DepthModel
from hi3d.engine.models.unet import Hi3DUNet
from hi3d.engine.models.vae import VAEDecoder, VAEEncoder

TOL = 2e-5  # float32, different kernels and summation orders


@pytest.fixture(scope="module")
def official():
    return torch.load(FIXTURES / "official_tiny.pt", weights_only=True)


def _load(module, keymap, keys, prefixes=("",)):
    source = {k: v for k, v in seeded_state_dict(keys).items() if k.startswith(prefixes)}
    fill(module, convert(keymap, source, module, type(module).__name__))
    return module.eval()


def _max_err(a, b):
    return (a - b).abs().max().item()


def _unet_error(official, resnet_eps: float | None = None) -> float:
    cfg = tiny()
    ref = official["unet"]
    unet = _load(Hi3DUNet(cfg.stage1.unet, cfg.num_frames), unet_keymap(cfg.stage1.unet), ref["keys"])
    if resnet_eps is not None:  # to show the test can fail
        for name, module in unet.named_modules():
            if isinstance(module, torch.nn.GroupNorm) and "res_block." in name:
                module.eps = resnet_eps
    with torch.no_grad():
        out = unet(ref["sample"], ref["c_noise"], ref["context"], ref["vector"])
    assert out.shape == ref["output"].shape
    assert ref["output"].abs().max() > 0.1  # a meaningful signal, not a collapsed one
    return _max_err(out, ref["output"])


def test_unet_matches_official_video_unet(official):
    """Key tables and architecture together: ours, as built, reproduces the official UNet."""
    err = _unet_error(official)
    print(f"unet max abs err {err:.2e}")
    assert err < 2e-6


def test_unet_parity_detects_a_normalisation_difference(official):
    """diffusers' own GroupNorm eps (1e-6) in the resnets is enough to miss the reference."""
    assert _unet_error(official, resnet_eps=1e-6) > 1e-5


@torch.no_grad()
def test_vae_matches_official_autoencoder(official):
    cfg = tiny()
    ref = official["vae"]
    encoder = _load(VAEEncoder(cfg.vae), vae_encoder_keymap(cfg.vae), ref["keys"], ("encoder.", "quant_conv."))
    decoder = _load(VAEDecoder(cfg.vae), vae_decoder_keymap(cfg.vae), ref["keys"], ("decoder.", "post_quant_conv."))
    mean, logvar = encoder(ref["image"])
    decoded = decoder(ref["latent"])
    errs = {
        "mean": _max_err(mean, ref["mean"]),
        "logvar": _max_err(logvar, ref["logvar"]),
        "decoded": _max_err(decoded, ref["decoded"]),
    }
    print("vae max abs err", {k: f"{v:.2e}" for k, v in errs.items()})
    assert all(e < TOL for e in errs.values()), errs


@pytest.mark.parametrize("name", ["clip", "aesthetic_clip"])
@torch.no_grad()
def test_clip_tower_matches_open_clip(official, name):
    cfg = tiny()
    vit = cfg.clip if name == "clip" else cfg.aesthetic.clip  # gelu (OpenCLIP) / quick_gelu (OpenAI)
    ref = official[name]
    tower = _load(CLIPImageTower(vit), clip_keymap(vit), ref["keys"])
    err = _max_err(tower(ref["pixels"]), ref["embeds"])
    print(f"{name} max abs err {err:.2e}")
    assert err < TOL


def test_wrong_activation_is_detected(official):
    """The parity tests can fail: the OpenAI tower run with OpenCLIP's gelu misses the reference."""
    cfg = tiny()
    ref = official["aesthetic_clip"]
    tower = _load(CLIPImageTower(cfg.clip), clip_keymap(cfg.clip), ref["keys"])  # gelu, not quick_gelu
    with torch.no_grad():
        assert _max_err(tower(ref["pixels"]), ref["embeds"]) > 1e-3


@pytest.mark.parametrize("size", [
    32,
    64,  # not the native size: the position grid is interpolated, as MiDaS does
])
@torch.no_grad()
def test_depth_matches_midas_dpt_hybrid(official, size):
    cfg = tiny().depth
    ref = official["depth"]
    depth = _load(DepthModel(cfg), dpt_keymap(cfg), ref["keys"])
    expected = ref[f"depth_{size}"]
    assert expected.abs().max() > 1e-3
    err = _max_err(depth(ref[f"pixels_{size}"]), expected)
    print(f"depth {size}x{size} max abs err {err:.2e} (output max {expected.abs().max():.2e})")
    assert err < TOL * max(1.0, expected.abs().max().item())
