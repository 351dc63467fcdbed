"""Official file containers and the whole load through real files (tiny sizes, official key names)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from checkpoint_fixtures import FIXTURES, read_manifest, seeded_state_dict
from safetensors.torch import save_file
from torch import nn

import hi3d.engine.checkpoints.official as official
from hi3d.engine.checkpoints import (
    CheckpointError,
    load_official_weights,
    read_state_dict,
)
from hi3d.engine.checkpoints.official import (
    AESTHETIC_MLP,
    MIDAS,
    OPENAI_VIT_L,
    STAGE1,
    STAGE2,
)
from hi3d.engine.config import tiny
from hi3d.engine.models import build_networks, build_seeded


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript(state: dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
    """A TorchScript archive whose state_dict has exactly these dotted names (as OpenAI's ViT-L-14.pt)."""
    root = _Holder()
    for name, tensor in state.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, _Holder())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(tensor, requires_grad=False))
    return torch.jit.script(root)


def test_deepspeed_container_and_module_prefix(tmp_path):
    t = torch.arange(6.0).reshape(2, 3)
    torch.save({"module": {"module.a.weight": t}, "global_steps": 7, "buffer_names": []}, tmp_path / "x.pt")
    loaded = read_state_dict(tmp_path / "x.pt")
    assert list(loaded) == ["a.weight"] and torch.equal(loaded["a.weight"], t)


def test_deepspeed_pickle_with_config_objects_loads_with_a_warning(tmp_path):
    import argparse

    t = torch.ones(2)
    torch.save({"module": {"module.w": t}, "args": argparse.Namespace(lr=1.0)}, tmp_path / "ds.pt")
    with pytest.warns(UserWarning, match="loading the full pickle"):
        assert torch.equal(read_state_dict(tmp_path / "ds.pt")["w"], t)


def test_midas_lightning_safetensors_and_torchscript_containers(tmp_path):
    t = torch.randn(3, 2)
    torch.save({"model": {"w": t}, "optimizer": {"lr": 0.1}}, tmp_path / "midas.pt")
    torch.save({"state_dict": {"w": t}, "epoch": 3}, tmp_path / "lightning.ckpt")
    save_file({"w": t}, str(tmp_path / "st.safetensors"))
    _torchscript({"visual.w": t}).save(str(tmp_path / "jit.pt"))
    for name, key in [("midas.pt", "w"), ("lightning.ckpt", "w"), ("st.safetensors", "w"), ("jit.pt", "visual.w")]:
        assert torch.equal(read_state_dict(tmp_path / name)[key], t), name


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*nope.pt"):
        read_state_dict(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read .*junk.pt"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save({"w": torch.zeros(1), "note": "text"}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="not tensors: \\['note'\\]"):
        read_state_dict(tmp_path / "mixed.pt")


def _official_tiny_files():
    """Official-named tiny tensors for every file. Key names and the UNet/VAE/CLIP/DPT shapes come from the
    official classes (official_tiny.pt); stage 2's UNet differs from stage 1's only in its input and
    vector widths, and the aesthetic MLP's official names are taken from the full manifest."""
    official = torch.load(FIXTURES / "official_tiny.pt", weights_only=True)
    cfg = replace(tiny(), depth=replace(tiny().depth, head_hidden_size=32))  # MiDaS's fixed head width
    unet1 = seeded_state_dict(official["unet"]["keys"])
    unet2 = dict(unet1)
    unet2["input_blocks.0.0.weight"] = torch.randn(32, cfg.stage2.unet.in_channels, 3, 3)
    unet2["label_emb.0.0.weight"] = torch.randn(128, cfg.stage2.unet.vector_dim)
    vae = seeded_state_dict(official["vae"]["keys"])
    clip = seeded_state_dict(official["clip"]["keys"])
    vit_l = seeded_state_dict(official["aesthetic_clip"]["keys"])
    depth = seeded_state_dict(official["depth"]["keys"])
    mlp_names = read_manifest()[AESTHETIC_MLP]
    mlp_layers = dict(zip(sorted({k.split(".")[1] for k in mlp_names}, key=int), [*cfg.aesthetic.mlp_dims, 1]))
    widths = [cfg.aesthetic.clip.embed_dim, *cfg.aesthetic.mlp_dims]
    mlp = {}
    for i, (layer, out) in enumerate(mlp_layers.items()):
        mlp[f"layers.{layer}.weight"] = torch.randn(out, widths[i])
        mlp[f"layers.{layer}.bias"] = torch.randn(out)

    def under(prefix, sd):
        return {prefix + k: v for k, v in sd.items()}

    stage1 = under("model.diffusion_model.", unet1) | under("first_stage_model.", vae)
    stage1 |= under("conditioner.embedders.0.open_clip.model.", clip) | under("conditioner.embedders.3.encoder.", vae)
    stage2 = under("model.diffusion_model.", unet2) | under("first_stage_model.", vae)
    stage2 |= under("conditioner.embedders.0.open_clip.model.", clip) | under("conditioner.embedders.3.encoder.", vae)
    ckpts = {OPENAI_VIT_L: vit_l | {"input_resolution": torch.tensor(28)}, AESTHETIC_MLP: mlp, MIDAS: depth}
    return cfg, official, stage1, stage2, ckpts


def _write(root, stage1, stage2, ckpts):
    for name, sd in ((STAGE1, stage1), (STAGE2, stage2)):
        torch.save({"module": {"module." + k: v for k, v in sd.items()}, "global_steps": 1}, root / name)
    (root / "ckpts" / "metric_models").mkdir(parents=True)
    _torchscript(ckpts[OPENAI_VIT_L]).save(str(root / OPENAI_VIT_L))
    torch.save(ckpts[AESTHETIC_MLP], root / AESTHETIC_MLP)
    save_file(ckpts[MIDAS], str((root / MIDAS).with_suffix(".safetensors")))


def test_load_official_weights_from_files(tmp_path):
    cfg, official, stage1, stage2, ckpts = _official_tiny_files()
    _write(tmp_path, stage1, stage2, ckpts)
    nets = build_networks(cfg)
    load_official_weights(cfg, nets, tmp_path)

    unet2 = nets["unet2"].net
    assert torch.equal(unet2.conv_in.weight, stage2["model.diffusion_model.input_blocks.0.0.weight"])
    assert torch.equal(unet2.add_embedding.linear_1.weight, stage2["model.diffusion_model.label_emb.0.0.weight"])
    assert torch.equal(nets["aesthetic"].mlp.layers[7].weight, ckpts[AESTHETIC_MLP]["layers.7.weight"])
    attn = stage1["first_stage_model.decoder.mid.attn_1.q.weight"]
    assert torch.equal(nets["vae_decoder"].decoder.mid_block.attentions[0].to_q.weight, attn[:, :, 0, 0])
    with torch.no_grad():  # whole towers: the official outputs for these exact weights
        ref = official["clip"]
        assert (nets["clip"](ref["pixels"]) - ref["embeds"]).abs().max() < 2e-5
        ref = official["aesthetic_clip"]
        assert (nets["aesthetic"].clip(ref["pixels"]) - ref["embeds"]).abs().max() < 2e-5
        ref = official["depth"]
        assert (nets["depth"](ref["pixels_32"]) - ref["depth_32"]).abs().max() < 2e-5


def test_differing_copies_are_refused(tmp_path):
    cfg, _, stage1, stage2, ckpts = _official_tiny_files()
    key = "conditioner.embedders.3.encoder.decoder.conv_out.bias"
    stage2[key] = stage2[key] + 1e-3
    _write(tmp_path, stage1, stage2, ckpts)
    with pytest.raises(CheckpointError, match=r"second_stage\.pt.*vae_decoder: this copy differs.*decoder\.conv_out\.bias"):
        load_official_weights(cfg, build_networks(cfg), tmp_path)


def test_missing_directory_and_file(tmp_path):
    cfg = tiny()
    with pytest.raises(CheckpointError, match="weights directory not found"):
        load_official_weights(cfg, {}, tmp_path / "absent")
    with pytest.raises(CheckpointError, match=r"first_stage\.pt not found(.|\n)*expected layout"):
        load_official_weights(cfg, build_networks(cfg), tmp_path)


def test_one_network_loads_alone_as_in_the_whole_set(tmp_path, monkeypatch):
    """The export loads one network at a time (a full UNet is 6 GB): the same tensors as the
    whole load, and a stage file holding none of its networks is never read."""
    cfg, _, stage1, stage2, ckpts = _official_tiny_files()
    _write(tmp_path, stage1, stage2, ckpts)
    whole = build_networks(cfg)
    load_official_weights(cfg, whole, tmp_path)
    read = []
    real_read = official.read_state_dict
    monkeypatch.setattr(official, "read_state_dict", lambda path: read.append(path.name) or real_read(path))
    for name in ("unet1", "unet2", "aesthetic", "depth"):
        read.clear()
        alone = build_seeded(cfg, name, seed=123)  # other random weights: every tensor must be overwritten
        load_official_weights(cfg, {name: alone}, tmp_path)
        want = whole[name].state_dict()
        assert all(torch.equal(t, want[k]) for k, t in alone.state_dict().items()), name
        assert (STAGE2 in read) == (name in ("unet2", "depth")) and (STAGE1 in read) == (name in ("unet1", "aesthetic"))
