"""CLIP ViT image towers (transformers' CLIPVisionModelWithProjection).

Both Hi3D image encoders are CLIP image towers: OpenCLIP ViT-H-14 (the UNet's
cross-attention context) and OpenAI ViT-L/14 (features for the aesthetic score). Both
pool the class token, layer-norm it and project it, as transformers' class does.
"""
from __future__ import annotations

from torch import Tensor, nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from hi3d.engine.config import ViTConfig


class CLIPImageTower(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.model = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=cfg.width,
                intermediate_size=cfg.mlp_dim,
                num_hidden_layers=cfg.layers,
                num_attention_heads=cfg.heads,
                image_size=cfg.image_size,
                patch_size=cfg.patch_size,
                projection_dim=cfg.embed_dim,
                hidden_act=cfg.activation,
                layer_norm_eps=1e-5,
            )
        )

    def forward(self, pixels: Tensor) -> Tensor:  # [N, 3, S, S] CLIP-normalised -> [N, embed_dim]
        return self.model(pixel_values=pixels).image_embeds
