"""Export specs agree with the networks and with the shapes the pipeline actually uses."""
import pytest
import torch

from hi3d.engine.conditioning import depth_input_size
from hi3d.engine.config import NETWORK_NAMES, full, tiny
from hi3d.export.specs import MAX_BATCH, Dim, export_specs, network_config


@pytest.mark.parametrize("make_cfg", [tiny, full])
def test_profiles_cover_what_the_pipeline_runs(make_cfg):
    cfg = make_cfg()
    specs = export_specs(cfg)
    assert tuple(specs) == NETWORK_NAMES
    f, (r1, r2) = cfg.latent_factor, (cfg.stage1.resolution, cfg.stage2.resolution)
    calls = {  # the inputs' shapes as engine/pipeline.py calls each network
        "unet1": [(2, cfg.num_frames, cfg.stage1.unet.in_channels, r1 // f, r1 // f)],
        "unet2": [(2, cfg.num_frames, cfg.stage2.unet.in_channels, r2 // f, r2 // f)],
        "vae_encoder": [(1, 3, r1, r1), (1, 3, r2, r2)],
        "vae_decoder": [(cfg.num_frames, 4, r1 // f, r1 // f), (1, 4, r2 // f, r2 // f)],
        "depth": [(1, 3) + (depth_input_size(r2, cfg.depth_scale),) * 2],
        "clip": [(1, 3, cfg.clip.image_size, cfg.clip.image_size)],
        "aesthetic": [(1, 3, cfg.aesthetic.clip.image_size, cfg.aesthetic.clip.image_size)],
    }
    for name, shapes in calls.items():
        lo, _, hi = specs[name].profile()[specs[name].inputs[0].name]
        for shape in shapes:
            assert len(shape) == len(lo) and all(a <= s <= b for a, s, b in zip(lo, shape, hi)), (name, shape, lo, hi)
    assert specs["unet1"].profile()["sample"][2][0] == MAX_BATCH


def test_sample_inputs_are_seeded_and_shaped():
    spec = export_specs(tiny())["unet2"]
    a, b = spec.sample_inputs(spec.sizes("opt"), seed=1), spec.sample_inputs(spec.sizes("opt"), seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert [tuple(x.shape) for x in a] == [s[1] for s in spec.profile().values()]
    c_noise = a[1]
    assert c_noise.min() >= 0.25 * torch.log(torch.tensor(0.002)) and c_noise.max() <= 0.25 * torch.log(torch.tensor(700.0))


def test_dynamic_axes_only_for_ranged_dims():
    specs = export_specs(tiny())
    assert specs["unet1"].dynamic_axes() == {"sample": {0: "B", 3: "h", 4: "w"}, "c_noise": {0: "B"},
                                             "context": {0: "B"}, "vector": {0: "B"},
                                             "v_pred": {0: "B", 3: "h", 4: "w"}}
    assert specs["vae_encoder"].dynamic_axes()["image"] == {0: "N", 2: "H", 3: "W"}


@pytest.mark.parametrize("make_cfg", [tiny, full])
def test_unet_parity_runs_small_while_the_profile_keeps_the_stage_latent(make_cfg):
    cfg = make_cfg()
    for stage, name in ((cfg.stage1, "unet1"), (cfg.stage2, "unet2")):
        spec, h = export_specs(cfg)[name], stage.resolution // cfg.latent_factor
        lo, opt, hi = spec.profile()["sample"]
        assert lo[-2:] == opt[-2:] == hi[-2:] == (h, h)
        for point in ("min", "opt"):
            sizes = spec.parity_sizes(point)
            assert sizes["B"] == spec.sizes(point)["B"] and sizes["h"] == sizes["w"] < 16
            assert sizes["h"] != spec.sizes("export")["h"]  # a size baked in at trace time fails parity


def test_dim_rejects_a_parity_size_equal_to_the_export_size():
    with pytest.raises(ValueError, match="must differ"):
        Dim(64, 64, 64, export=16, parity=16)
    with pytest.raises(ValueError, match="outside"):
        Dim(1, 2, 8, export=16)


def test_fingerprints_track_what_shapes_the_graph():
    a, b = tiny(), tiny().with_steps(7)
    assert export_specs(a)["unet1"].fingerprint() == export_specs(b)["unet1"].fingerprint()
    assert network_config(a, "unet1") == network_config(b, "unet1")  # sampler settings do not matter
    assert export_specs(a)["unet1"].fingerprint() != export_specs(full())["unet1"].fingerprint()
    assert network_config(a, "vae_encoder") != network_config(full(), "vae_encoder")
