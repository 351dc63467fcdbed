"""Key tables for CLIP image towers in the OpenAI / open_clip layout -> transformers' CLIP.

open_clip's `VisionTransformer` keeps OpenAI CLIP's names, so one table serves both the
OpenCLIP ViT-H-14 (conditioner embedder 0) and OpenAI's ViT-L/14 (the aesthetic tower).
Both official copies have `.transformer` (the text tower) deleted but keep the text-side
tensors that hang directly off the CLIP object; those are listed as unused.
"""
from __future__ import annotations

from hi3d.engine.checkpoints.keymap import KeyMap, transpose
from hi3d.engine.config import ViTConfig

# Text-side tensors of a CLIP object; the image tower never reads them.
TEXT_SIDE = {
    "positional_embedding": "text-tower position table; only the image tower is used",
    "token_embedding.": "text-tower token table; only the image tower is used",
    "ln_final.": "text-tower final norm; only the image tower is used",
    "text_projection": "text-tower projection; only the image tower is used",
    "logit_scale": "contrastive-training temperature; no effect on image features",
    "logit_bias": "contrastive-training bias; no effect on image features",
}
# Present only in files holding the whole CLIP (ckpts/open_clip_pytorch_model.bin, ViT-L-14.pt).
FULL_TEXT_TOWER = {
    "transformer.": "text transformer; only the image tower is used",
    "attn_mask": "text causal mask",
    "input_resolution": "TorchScript metadata scalar",
    "context_length": "TorchScript metadata scalar",
    "vocab_size": "TorchScript metadata scalar",
}


def clip_keymap(cfg: ViTConfig, ours: str = "model.", whole_clip: bool = False) -> KeyMap:
    """CLIP object (`visual.*` + text-side leftovers) -> CLIPImageTower."""
    vision = ours + "vision_model."
    blocks = {
        "visual.class_embedding": vision + "embeddings.class_embedding",
        "visual.positional_embedding": vision + "embeddings.position_embedding.weight",
        "visual.conv1.": vision + "embeddings.patch_embedding.",
        "visual.ln_pre.": vision + "pre_layrnorm.",
        "visual.ln_post.": vision + "post_layernorm.",
        "visual.proj": ours + "visual_projection.weight",
    }
    for i in range(cfg.layers):
        blocks[f"visual.transformer.resblocks.{i}."] = f"{vision}encoder.layers.{i}."
    unused = dict(TEXT_SIDE) | (FULL_TEXT_TOWER if whole_clip else {})
    return KeyMap(
        blocks=blocks,
        leaves=(
            (r"ln_1\.", "layer_norm1."),
            (r"ln_2\.", "layer_norm2."),
            (r"attn\.out_proj\.", "self_attn.out_proj."),
            (r"attn\.in_proj_", "self_attn.in_proj_"),
            (r"mlp\.c_fc\.", "mlp.fc1."),
            (r"mlp\.c_proj\.", "mlp.fc2."),
        ),
        splits={
            "self_attn.in_proj_weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
            "self_attn.in_proj_bias": ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
        },
        # open_clip multiplies x @ proj ([width, embed]); nn.Linear stores [embed, width].
        transforms=((r"^visual\.proj$", transpose),),
        unused=unused,
    )


def aesthetic_mlp_keymap(ours: str = "mlp.") -> KeyMap:
    """LAION aesthetic MLP (tools/aes_score.py `MLP`): the same Sequential indices as ours."""
    return KeyMap(blocks={"layers.": ours + "layers."})
