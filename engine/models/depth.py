"""MiDaS DPT-Hybrid depth (transformers' DPTForDepthEstimation with a BiT backbone).

Outputs relative inverse depth (disparity), as MiDaS does; stage 2 normalises it per
frame, so only its shape matters downstream, not its scale.
"""
from __future__ import annotations

import functools

from torch import Tensor, nn
from transformers import BitConfig, DPTConfig, DPTForDepthEstimation

from hi3d.engine.config import DepthConfig


def dpt_config(cfg: DepthConfig) -> DPTConfig:
    stages = len(cfg.backbone_depths)
    backbone = BitConfig(
        global_padding="same",
        layer_type="bottleneck",
        depths=list(cfg.backbone_depths),
        embedding_size=cfg.backbone_width,
        hidden_sizes=[cfg.backbone_width * 4 * 2**i for i in range(stages)],
        out_features=[f"stage{i + 1}" for i in range(stages)],
        embedding_dynamic_padding=True,
    )
    return DPTConfig(
        is_hybrid=True,
        backbone_config=backbone,
        backbone_featmap_shape=[1, backbone.hidden_sizes[-1], cfg.image_size // 16, cfg.image_size // 16],
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        intermediate_size=cfg.mlp_dim,
        image_size=cfg.image_size,
        patch_size=16,
        backbone_out_indices=list(cfg.out_indices),
        neck_hidden_sizes=list(cfg.neck_hidden_sizes),
        fusion_hidden_size=cfg.fusion_hidden_size,
        head_hidden_size=cfg.head_hidden_size,
        readout_type="project",
        reassemble_factors=[1, 1, 1, 0.5],
        layer_norm_eps=1e-6,
    )


class DepthModel(nn.Module):
    def __init__(self, cfg: DepthConfig):
        super().__init__()
        self.cfg = cfg
        self.model = DPTForDepthEstimation(dpt_config(cfg))
        # MiDaS resizes its position grid to any input size; transformers only does so when
        # asked, and DPTForDepthEstimation does not pass the flag down.
        embeddings = self.model.dpt.embeddings
        embeddings.forward = functools.partial(embeddings.forward, interpolate_pos_encoding=True)

    def forward(self, pixels: Tensor) -> Tensor:  # [N, 3, S, S] normalised to [-1, 1] -> [N, S, S]
        return self.model(pixel_values=pixels).predicted_depth
