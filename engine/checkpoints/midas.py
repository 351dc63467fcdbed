"""Key table for MiDaS DPT-Hybrid (annotator/midas, timm `vit_base_resnet50_384`) -> transformers' DPT.

MiDaS numbers its four fusion blocks from the finest (refinenet1) to the coarsest
(refinenet4, which runs first); transformers numbers them in execution order.
"""
from __future__ import annotations

from hi3d.engine.checkpoints.keymap import KeyMap
from hi3d.engine.config import DepthConfig

_VIT_BLOCK = r"^pretrained\.model\.blocks\."  # BiT blocks have norm1/norm2 too, under the same names as ours


def dpt_keymap(cfg: DepthConfig, ours: str = "model.") -> KeyMap:
    """DPTDepthModel state dict (`pretrained.*`, `scratch.*`) -> DepthModel."""
    vit, backbone = "pretrained.model.", "pretrained.model.patch_embed.backbone."
    emb = ours + "dpt.embeddings."
    blocks = {
        vit + "cls_token": emb + "cls_token",
        vit + "pos_embed": emb + "position_embeddings",
        backbone + "stem.conv.": emb + "backbone.bit.embedder.convolution.",
        backbone + "stem.norm.": emb + "backbone.bit.embedder.norm.",
        vit + "patch_embed.proj.": emb + "projection.",
        vit + "norm.": ours + "dpt.layernorm.",
        "scratch.output_conv.": ours + "head.head.",
    }
    for s, depth in enumerate(cfg.backbone_depths):
        for b in range(depth):
            blocks[f"{backbone}stages.{s}.blocks.{b}."] = f"{emb}backbone.bit.encoder.stages.{s}.layers.{b}."
    for i in range(cfg.layers):
        blocks[f"{vit}blocks.{i}."] = f"{ours}dpt.encoder.layer.{i}."
    stages = len(cfg.neck_hidden_sizes)
    for n in range(stages):
        blocks[f"scratch.layer{n + 1}_rn."] = f"{ours}neck.convs.{n}."
        blocks[f"scratch.refinenet{n + 1}."] = f"{ours}neck.fusion_stage.layers.{stages - 1 - n}."
        # act_postprocess N: [readout project, transpose, unflatten, 1x1 projection, resize].
        # In the hybrid only the ViT stages (3, 4) have parameters; 1 and 2 come from BiT.
        post = f"pretrained.act_postprocess{n + 1}."
        blocks[post + "0.project.0."] = f"{ours}neck.reassemble_stage.readout_projects.{n}.0."
        blocks[post + "3."] = f"{ours}neck.reassemble_stage.layers.{n}.projection."
        blocks[post + "4."] = f"{ours}neck.reassemble_stage.layers.{n}.resize."
    return KeyMap(
        blocks=blocks,
        leaves=(
            (r"norm1\.", "layernorm_before.", _VIT_BLOCK),
            (r"norm2\.", "layernorm_after.", _VIT_BLOCK),
            (r"attn\.qkv\.", "attention.attention.qkv."),
            (r"attn\.proj\.", "attention.output.dense."),
            (r"mlp\.fc1\.", "intermediate.dense."),
            (r"mlp\.fc2\.", "output.dense."),
            (r"out_conv\.", "projection."),
            (r"resConfUnit(\d)\.conv(\d)\.", r"residual_layer\1.convolution\2."),
        ),
        splits={
            "attention.attention.qkv.weight": tuple(f"attention.attention.{p}.weight" for p in ("query", "key", "value")),
            "attention.attention.qkv.bias": tuple(f"attention.attention.{p}.bias" for p in ("query", "key", "value")),
        },
        unused={vit + "head.": "timm's ImageNet classifier; MiDaS reads intermediate features only"},
    )
