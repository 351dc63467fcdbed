"""The SVD-XT video UNet of both Hi3D stages (diffusers' implementation of sgm's VideoUNet).

Hi3D replaces SVD's (fps, motion bucket, cond_aug) time ids with its own precomputed
"vector" condition (engine/conditioning.py), so the sinusoidal `add_time_proj` becomes
an identity and the vector feeds `add_embedding` (sgm's `label_emb`) directly.
"""
from __future__ import annotations

import torch
from diffusers import UNetSpatioTemporalConditionModel
from torch import Tensor, nn

from hi3d.engine.config import UNetConfig


class Hi3DUNet(nn.Module):
    def __init__(self, cfg: UNetConfig, num_frames: int = 16):
        super().__init__()
        self.cfg = cfg
        self.num_frames = num_frames
        self.net = UNetSpatioTemporalConditionModel(
            in_channels=cfg.in_channels,
            out_channels=cfg.out_channels,
            block_out_channels=cfg.block_out_channels,
            projection_class_embeddings_input_dim=cfg.vector_dim,
            layers_per_block=cfg.layers_per_block,
            cross_attention_dim=cfg.cross_attention_dim,
            num_attention_heads=cfg.num_heads,
            num_frames=num_frames,
        )
        self.net.add_time_proj = nn.Identity()
        # diffusers builds some SpatioTemporalResBlocks with GroupNorm eps 1e-6; sgm uses 1e-5
        # everywhere (the official-parity test in tests/test_checkpoints_parity.py catches this).
        for name, m in self.net.named_modules():
            if isinstance(m, nn.GroupNorm) and "res_block." in name:
                m.eps = 1e-5

    def forward(
        self,
        sample: Tensor,  # [B, F, in_channels, h, w]: c_in * noisy latent ++ condition channels
        c_noise: Tensor,  # [B] 0.25 * ln(sigma)
        context: Tensor,  # [B, 1, cross_attention_dim] CLIP image embedding
        vector: Tensor,  # [B, vector_dim]
    ) -> Tensor:  # [B, F, 4, h, w] raw network output (v-prediction)
        return self.net(sample, c_noise, context, vector, return_dict=False)[0]

    def sample_inputs(self, batch: int = 2, latent_size: int = 8, dtype=torch.float32) -> dict[str, Tensor]:
        """Seeded inputs of the right shapes (export, parity tests, benchmarks)."""
        g = torch.Generator().manual_seed(0)
        c = self.cfg
        return {
            "sample": torch.randn(batch, self.num_frames, c.in_channels, latent_size, latent_size, generator=g).to(dtype),
            "c_noise": torch.full((batch,), 0.25 * torch.log(torch.tensor(3.0)).item()).to(dtype),
            "context": torch.randn(batch, 1, c.cross_attention_dim, generator=g).to(dtype),
            "vector": torch.randn(batch, c.vector_dim, generator=g).to(dtype),
        }
