"""Output shapes of every network for both presets (full on the meta device: no memory)."""
import pytest
import torch

from hi3d.engine.config import full, tiny
from hi3d.engine.models import build_networks, build_seeded


def _shapes(cfg, device):
    n = build_networks(cfg) if device == "cpu" else None
    if n is None:
        with torch.device("meta"):
            n = build_networks(cfg)
    r1 = cfg.stage1.resolution
    h1, h2 = r1 // 8, cfg.stage2.resolution // 8
    f = cfg.num_frames
    kw = dict(device=device)
    with torch.no_grad(), torch.device(device):  # the UNet makes tensors internally
        # diffusers' AlphaBlender mixes in a CPU tensor, so the UNets cannot run on meta
        u1 = None if device == "meta" else n["unet1"](torch.zeros(2, f, 8, h1, h1, **kw), torch.zeros(2, **kw),
                        torch.zeros(2, 1, cfg.clip.embed_dim, **kw), torch.zeros(2, 768, **kw))
        u2 = None if device == "meta" else n["unet2"](torch.zeros(1, f, 17, h2, h2, **kw), torch.zeros(1, **kw),
                        torch.zeros(1, 1, cfg.clip.embed_dim, **kw), torch.zeros(1, 512, **kw))
        mean, logvar = n["vae_encoder"](torch.zeros(2, 3, r1, r1, **kw))
        dec = n["vae_decoder"](mean)
        s = cfg.clip.image_size
        clip = n["clip"](torch.zeros(3, 3, s, s, **kw))
        a = cfg.aesthetic.clip.image_size
        aes = n["aesthetic"](torch.zeros(1, 3, a, a, **kw))
        d = cfg.depth.image_size
        depth = n["depth"](torch.zeros(2, 3, d, d, **kw))
    return dict(u1=getattr(u1, "shape", None), u2=getattr(u2, "shape", None), mean=mean.shape, logvar=logvar.shape, dec=dec.shape,
                clip=clip.shape, aes=aes.shape, depth=depth.shape)


@pytest.mark.parametrize("make,device", [(tiny, "cpu"), (full, "meta")])
def test_network_shapes(make, device):
    cfg = make()
    s = _shapes(cfg, device)
    h1, h2, r1 = cfg.stage1.resolution // 8, cfg.stage2.resolution // 8, cfg.stage1.resolution
    if device != "meta":  # full UNet shapes are checked through ONNX shape inference in tests/export
        assert s["u1"] == (2, 16, 4, h1, h1)
        assert s["u2"] == (1, 16, 4, h2, h2)
    assert s["mean"] == s["logvar"] == (2, 4, h1, h1)
    assert s["dec"] == (2, 3, r1, r1)
    assert s["clip"] == (3, cfg.clip.embed_dim)
    assert s["aes"] == (1, 1)
    assert s["depth"] == (2, cfg.depth.image_size, cfg.depth.image_size)


def test_full_sizes_are_the_official_ones():
    with torch.device("meta"):
        n = build_networks(full())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 1.50e9 < count(n["unet1"]) < 1.55e9  # SVD-XT UNet: 1.52 B
    assert count(n["unet1"].net.conv_in) == 320 * 8 * 9 + 320
    assert count(n["unet2"].net.conv_in) == 320 * 17 * 9 + 320
    assert n["unet1"].net.add_embedding.linear_1.in_features == 768
    assert n["unet2"].net.add_embedding.linear_1.in_features == 512
    assert 0.62e9 < count(n["clip"]) < 0.64e9  # OpenCLIP ViT-H-14 image tower
    assert 83e6 < count(n["vae_encoder"]) + count(n["vae_decoder"]) < 84e6


def test_one_network_built_alone_has_the_weights_it_has_in_the_set():
    cfg = tiny()
    together = build_networks(cfg, seed=3)
    for name in ("vae_decoder", "unet2"):
        alone = build_seeded(cfg, name, seed=3)
        pairs = zip(together[name].state_dict().values(), alone.state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs), name
    other = build_seeded(cfg, "unet2", seed=4).state_dict()
    assert not torch.equal(other["net.conv_in.weight"], together["unet2"].state_dict()["net.conv_in.weight"])
