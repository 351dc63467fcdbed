"""Official key accounting at full size (no weights: names and shapes on the meta device), and errors.

tests/fixtures/official_keys_full.json.gz lists every key and shape of the official files,
dumped from the official modules themselves (tests/fixtures/make_official_fixtures.py),
so these tests do not check our tables against themselves.
"""
from __future__ import annotations

import pytest
import torch
from checkpoint_fixtures import read_manifest

from hi3d.engine.checkpoints import CheckpointError, load_from
from hi3d.engine.checkpoints.official import (
    AESTHETIC_MLP,
    MIDAS,
    OPEN_CLIP,
    OPENAI_VIT_L,
    STAGE1,
    STAGE2,
)
from hi3d.engine.config import full
from hi3d.engine.models import build_networks


@pytest.fixture(scope="module")
def manifest():
    return read_manifest()


@pytest.fixture(scope="module")
def meta_networks():
    with torch.device("meta"):
        return build_networks(full())


def _meta_reader(files):
    def read(rel):
        keys = files.get(rel)
        return None if keys is None else {k: torch.empty(s, device="meta") for k, s in keys.items()}

    return read


def _without(keys, prefixes):
    return {k: s for k, s in keys.items() if not k.startswith(prefixes)}


def test_manifest_covers_every_official_network(manifest):
    stage1, stage2 = manifest[STAGE1], manifest[STAGE2]
    assert stage1["model.diffusion_model.label_emb.0.0.weight"] == [1280, 768]
    assert stage2["model.diffusion_model.input_blocks.0.0.weight"] == [320, 17, 3, 3]
    assert stage1["conditioner.embedders.0.open_clip.model.visual.proj"] == [1280, 1024]
    assert stage2["conditioner.embedders.2.model.model.pretrained.model.pos_embed"] == [1, 577, 768]
    assert any(k.startswith("conditioner.embedders.3.encoder.decoder.") for k in stage1)


def test_full_official_files_fill_every_parameter(manifest, meta_networks):
    """The stage files as released: every official key consumed, every parameter of ours filled, shapes equal."""
    load_from(full(), meta_networks, _meta_reader({STAGE1: manifest[STAGE1], STAGE2: manifest[STAGE2]}))


def test_stage2_training_degrader_is_known_unused(manifest, meta_networks):
    stage2 = manifest[STAGE2] | {"warp_model.jpeger.compress.l1.y_table": [8, 8]}
    load_from(full(), meta_networks, _meta_reader({STAGE1: manifest[STAGE1], STAGE2: stage2}))
    stage1 = manifest[STAGE1] | {"warp_model.jpeger.compress.l1.y_table": [8, 8]}  # stage 1 has no such trainer
    with pytest.raises(CheckpointError, match="keys outside every known network"):
        load_from(full(), meta_networks, _meta_reader({STAGE1: stage1, STAGE2: manifest[STAGE2]}))


def test_ckpts_files_fill_networks_missing_from_stage_files(manifest, meta_networks):
    """Stage files without the frozen conditioners: the ckpts/ files (whole CLIPs, MiDaS, MLP) fill them."""
    stage1 = _without(manifest[STAGE1], ("conditioner.embedders.0.", "conditioner.embedders.1."))
    stage2 = _without(manifest[STAGE2], ("conditioner.embedders.0.", "conditioner.embedders.2."))
    files = {STAGE1: stage1, STAGE2: stage2} | {k: manifest[k] for k in (OPEN_CLIP, OPENAI_VIT_L, AESTHETIC_MLP, MIDAS)}
    load_from(full(), meta_networks, _meta_reader(files))


def test_missing_ckpts_file_is_named(manifest, meta_networks):
    stage2 = _without(manifest[STAGE2], ("conditioner.embedders.2.",))
    with pytest.raises(CheckpointError, match=r"no weights for depth.*ckpts/dpt_hybrid_384\.pt"):
        load_from(full(), meta_networks, _meta_reader({STAGE1: manifest[STAGE1], STAGE2: stage2}))


def test_missing_stage_file_names_file_and_layout(manifest, meta_networks):
    with pytest.raises(CheckpointError, match=r"second_stage\.pt not found(.|\n)*expected layout"):
        load_from(full(), meta_networks, _meta_reader({STAGE1: manifest[STAGE1]}))


def test_missing_key_is_listed(manifest, meta_networks):
    stage1 = dict(manifest[STAGE1])
    del stage1["model.diffusion_model.output_blocks.5.2.conv.weight"]
    stage1["model.diffusion_model.label_emb.0.1.weight"] = [4]  # reported together with the missing one
    with pytest.raises(CheckpointError) as info:
        load_from(full(), meta_networks, _meta_reader({STAGE1: stage1, STAGE2: manifest[STAGE2]}))
    message = str(info.value)
    assert "-> unet1: 1 missing and 1 unexpected" in message
    assert "net.up_blocks.1.upsamplers.0.conv.weight" in message and "label_emb.0.1.weight" in message


def test_unexpected_keys_are_listed_with_counts(manifest, meta_networks):
    stage1 = dict(manifest[STAGE1])
    stage1 |= {f"model.diffusion_model.extra.{i}.weight": [4] for i in range(25)}  # under a known prefix
    stage1["model_ema.decay"] = []  # under no known prefix
    with pytest.raises(CheckpointError, match=r"keys outside every known network(.|\n)*model_ema\.decay"):
        load_from(full(), meta_networks, _meta_reader({STAGE1: stage1, STAGE2: manifest[STAGE2]}))
    del stage1["model_ema.decay"]
    with pytest.raises(CheckpointError) as info:
        load_from(full(), meta_networks, _meta_reader({STAGE1: stage1, STAGE2: manifest[STAGE2]}))
    message = str(info.value)
    assert "0 missing and 25 unexpected" in message and "... and 5 more" in message


def test_shape_mismatch_names_key_expected_and_got(manifest, meta_networks):
    stage2 = dict(manifest[STAGE2])
    stage2["model.diffusion_model.input_blocks.0.0.weight"] = [320, 8, 3, 3]  # a stage-1 UNet in stage 2
    with pytest.raises(CheckpointError) as info:
        load_from(full(), meta_networks, _meta_reader({STAGE1: manifest[STAGE1], STAGE2: stage2}))
    message = str(info.value)
    assert "input_blocks.0.0.weight -> net.conv_in.weight" in message
    assert "expected (320, 17, 3, 3), got (320, 8, 3, 3)" in message


def test_network_without_any_source_is_named(manifest, meta_networks):
    stage1 = _without(manifest[STAGE1], ("first_stage_model.",))  # the VAE has no ckpts/ fallback
    with pytest.raises(CheckpointError, match=r"no weights for vae_encoder: first_stage\.pt has no 'first_stage_model\.\*' keys\n"):
        load_from(full(), meta_networks, _meta_reader({STAGE1: stage1, STAGE2: manifest[STAGE2]}))
