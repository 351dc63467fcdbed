"""Key tables for the sgm (generative-models) networks: VideoUNet and the LDM AutoencoderKL.

Ours are diffusers' UNetSpatioTemporalConditionModel and AutoencoderKL; the block
numbering below follows both constructors (sgm numbers input/output blocks linearly,
diffusers nests them by resolution level).
"""
from __future__ import annotations

from hi3d.engine.checkpoints.keymap import KeyMap, conv1x1_to_linear
from hi3d.engine.config import UNetConfig, VAEConfig

_UNET_LEAVES = (
    (r"in_layers\.0\.", "spatial_res_block.norm1."),
    (r"in_layers\.2\.", "spatial_res_block.conv1."),
    (r"emb_layers\.1\.", "spatial_res_block.time_emb_proj."),
    (r"out_layers\.0\.", "spatial_res_block.norm2."),
    (r"out_layers\.3\.", "spatial_res_block.conv2."),
    (r"skip_connection\.", "spatial_res_block.conv_shortcut."),
    (r"time_stack\.in_layers\.0\.", "temporal_res_block.norm1."),
    (r"time_stack\.in_layers\.2\.", "temporal_res_block.conv1."),
    (r"time_stack\.emb_layers\.1\.", "temporal_res_block.time_emb_proj."),
    (r"time_stack\.out_layers\.0\.", "temporal_res_block.norm2."),
    (r"time_stack\.out_layers\.3\.", "temporal_res_block.conv2."),
    (r"time_stack\.", "temporal_transformer_blocks."),  # in SpatialVideoTransformer
    (r"time_pos_embed\.0\.", "time_pos_embed.linear_1."),
    (r"time_pos_embed\.2\.", "time_pos_embed.linear_2."),
)


def unet_keymap(cfg: UNetConfig, ours: str = "net.") -> KeyMap:
    """sgm VideoUNet -> Hi3DUNet. Attention sits at every level but the coarsest (down) / finest-first (up)."""
    levels, layers = len(cfg.block_out_channels), cfg.layers_per_block
    blocks = {
        "time_embed.0.": "time_embedding.linear_1.",
        "time_embed.2.": "time_embedding.linear_2.",
        # Hi3D's vector goes straight into sgm's label_emb (diffusers' add_time_proj is an identity).
        "label_emb.0.0.": "add_embedding.linear_1.",
        "label_emb.0.2.": "add_embedding.linear_2.",
        "input_blocks.0.0.": "conv_in.",
        "middle_block.0.": "mid_block.resnets.0.",
        "middle_block.1.": "mid_block.attentions.0.",
        "middle_block.2.": "mid_block.resnets.1.",
        "out.0.": "conv_norm_out.",
        "out.2.": "conv_out.",
    }
    i = 1
    for level in range(levels):
        for j in range(layers):
            blocks[f"input_blocks.{i}.0."] = f"down_blocks.{level}.resnets.{j}."
            if level < levels - 1:
                blocks[f"input_blocks.{i}.1."] = f"down_blocks.{level}.attentions.{j}."
            i += 1
        if level < levels - 1:
            blocks[f"input_blocks.{i}.0.op."] = f"down_blocks.{level}.downsamplers.0.conv."
            i += 1
    i = 0
    for level in range(levels):
        attention = level > 0
        for j in range(layers + 1):
            blocks[f"output_blocks.{i}.0."] = f"up_blocks.{level}.resnets.{j}."
            if attention:
                blocks[f"output_blocks.{i}.1."] = f"up_blocks.{level}.attentions.{j}."
            if j == layers and level < levels - 1:
                blocks[f"output_blocks.{i}.{2 if attention else 1}.conv."] = f"up_blocks.{level}.upsamplers.0.conv."
            i += 1
    return KeyMap(blocks={k: ours + v for k, v in blocks.items()}, leaves=_UNET_LEAVES)


_VAE_LEAVES = (
    (r"nin_shortcut\.", "conv_shortcut."),
    (r"norm\.", "group_norm."),  # only the mid attention has a bare 'norm'
    (r"q\.", "to_q."),
    (r"k\.", "to_k."),
    (r"v\.", "to_v."),
    (r"proj_out\.", "to_out.0."),
)
# LDM's mid attention projects with 1x1 convolutions; diffusers with linear layers.
_VAE_TRANSFORMS = ((r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", conv1x1_to_linear),)


def _vae_mid(side: str) -> dict[str, str]:
    return {
        f"{side}.conv_in.": f"{side}.conv_in.",
        f"{side}.mid.block_1.": f"{side}.mid_block.resnets.0.",
        f"{side}.mid.attn_1.": f"{side}.mid_block.attentions.0.",
        f"{side}.mid.block_2.": f"{side}.mid_block.resnets.1.",
        f"{side}.norm_out.": f"{side}.conv_norm_out.",
        f"{side}.conv_out.": f"{side}.conv_out.",
    }


def vae_encoder_keymap(cfg: VAEConfig) -> KeyMap:
    """sgm AutoencoderKL `encoder.*` + `quant_conv.*` -> VAEEncoder."""
    levels = len(cfg.block_out_channels)
    blocks = _vae_mid("encoder") | {"quant_conv.": "quant_conv."}
    for i in range(levels):
        for j in range(cfg.layers_per_block):
            blocks[f"encoder.down.{i}.block.{j}."] = f"encoder.down_blocks.{i}.resnets.{j}."
        if i < levels - 1:
            blocks[f"encoder.down.{i}.downsample.conv."] = f"encoder.down_blocks.{i}.downsamplers.0.conv."
    return KeyMap(blocks=blocks, leaves=_VAE_LEAVES, transforms=_VAE_TRANSFORMS)


def vae_decoder_keymap(cfg: VAEConfig) -> KeyMap:
    """sgm AutoencoderKL `decoder.*` + `post_quant_conv.*` -> VAEDecoder (LDM numbers up levels finest-first)."""
    levels = len(cfg.block_out_channels)
    blocks = _vae_mid("decoder") | {"post_quant_conv.": "post_quant_conv."}
    for i in range(levels):
        ours = levels - 1 - i
        for j in range(cfg.layers_per_block + 1):
            blocks[f"decoder.up.{i}.block.{j}."] = f"decoder.up_blocks.{ours}.resnets.{j}."
        if i > 0:
            blocks[f"decoder.up.{i}.upsample.conv."] = f"decoder.up_blocks.{ours}.upsamplers.0.conv."
    return KeyMap(blocks=blocks, leaves=_VAE_LEAVES, transforms=_VAE_TRANSFORMS)
