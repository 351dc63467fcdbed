"""The LDM AutoencoderKL of SVD (diffusers' AutoencoderKL holds the same network).

Split into the two halves the pipeline and the exporters use separately: the encoder
returns the posterior moments (mean, logvar), the decoder maps *unscaled* latents to
pixels in [-1, 1]. The 0.18215 scale is applied by the pipeline, where the reference
note says it applies.
"""
from __future__ import annotations

from diffusers import AutoencoderKL
from torch import Tensor, nn

from hi3d.engine.config import VAEConfig


def build_autoencoder(cfg: VAEConfig) -> AutoencoderKL:
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        scaling_factor=cfg.scaling_factor,
    )


class VAEEncoder(nn.Module):
    """pixels [-1, 1] -> posterior (mean, logvar); the mode is `mean`."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ae = build_autoencoder(cfg)
        self.encoder, self.quant_conv = ae.encoder, ae.quant_conv

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:  # [N, 3, H, W] -> 2 x [N, 4, H/8, W/8]
        mean, logvar = self.quant_conv(self.encoder(image)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


class VAEDecoder(nn.Module):
    """unscaled latents -> pixels (not clamped: the pipeline clamps)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ae = build_autoencoder(cfg)
        self.post_quant_conv, self.decoder = ae.post_quant_conv, ae.decoder

    def forward(self, latent: Tensor) -> Tensor:  # [N, 4, h, w] -> [N, 3, 8h, 8w]
        return self.decoder(self.post_quant_conv(latent))
