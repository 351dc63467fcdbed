"""Configuration as data: one frozen dataclass per component, two presets.

`full` reproduces the official Hi3D networks (configs/inference-v01.yaml and
inference-v02.yaml of the official release); `tiny` keeps the same topology with a
few channels so the whole path runs on a CPU in seconds (tests, the weight-free demo).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from hi3d.engine.errors import InvalidInput

# Every network of the pipeline, in the order data flows through them: the one list that
# export specs, artifacts, backends and the served models are keyed by.
NETWORK_NAMES = ("clip", "aesthetic", "vae_encoder", "vae_decoder", "unet1", "unet2", "depth")


@dataclass(frozen=True)
class UNetConfig:
    """SVD-XT VideoUNet (sgm `VideoUNet`)."""

    in_channels: int  # 8 in stage 1 (latent + cond latent), 17 in stage 2 (+ depth 9)
    vector_dim: int  # adm_in_channels: 768 in stage 1, 512 in stage 2
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)  # 320 * channel_mult
    layers_per_block: int = 2  # num_res_blocks
    head_dim: int = 64  # num_head_channels
    cross_attention_dim: int = 1024  # context_dim = CLIP embedding width
    out_channels: int = 4

    @property
    def num_heads(self) -> tuple[int, ...]:
        return tuple(c // self.head_dim for c in self.block_out_channels)


@dataclass(frozen=True)
class VAEConfig:
    """LDM AutoencoderKL (sgm `AutoencoderKL`, no attention outside the mid block)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # ch 128 * ch_mult
    layers_per_block: int = 2
    latent_channels: int = 4
    scaling_factor: float = 0.18215


@dataclass(frozen=True)
class ViTConfig:
    """A CLIP ViT image tower (pre-norm, class-token pooling, linear projection)."""

    width: int
    layers: int
    heads: int
    mlp_dim: int
    embed_dim: int  # projection output
    image_size: int = 224
    patch_size: int = 14
    activation: str = "gelu"  # OpenCLIP ViT-H-14: gelu; OpenAI ViT-L/14: quick_gelu


@dataclass(frozen=True)
class AestheticConfig:
    """OpenAI CLIP ViT-L/14 features -> LAION aesthetic MLP -> one score."""

    clip: ViTConfig
    mlp_dims: tuple[int, ...] = (1024, 128, 64, 16)  # hidden sizes; input = clip.embed_dim


@dataclass(frozen=True)
class DepthConfig:
    """MiDaS DPT-Hybrid (vitb_rn50_384): BiT ResNet-50 stem + ViT-B/16 + DPT head."""

    hidden_size: int = 768
    layers: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    image_size: int = 384  # position-embedding grid the weights were trained at
    backbone_depths: tuple[int, ...] = (3, 4, 9)  # BiT stages (ResNet-50 minus the last)
    backbone_width: int = 64  # BiT stem width; stages are 4x, 8x, 16x that
    out_indices: tuple[int, ...] = (2, 5, 8, 11)
    neck_hidden_sizes: tuple[int, ...] = (256, 512, 768, 768)  # first two = BiT stage widths
    fusion_hidden_size: int = 256
    head_hidden_size: int = 32  # fixed at 32 in MiDaS


@dataclass(frozen=True)
class SamplerConfig:
    """EDM discretization + Euler + per-frame linear CFG (sgm EulerEDMSampler)."""

    steps: int = 25
    sigma_min: float = 0.002
    sigma_max: float = 700.0
    rho: float = 7.0
    cfg_min: float = 1.0  # guidance scale of frame 0 (the input view)
    cfg_max: float = 2.5  # guidance scale of the last frame


@dataclass(frozen=True)
class StageConfig:
    unet: UNetConfig
    sampler: SamplerConfig
    resolution: int  # output views are resolution x resolution


@dataclass(frozen=True)
class Hi3DConfig:
    name: str
    stage1: StageConfig
    stage2: StageConfig
    vae: VAEConfig
    clip: ViTConfig  # OpenCLIP ViT-H-14 image tower: the UNet's cross-attention context
    aesthetic: AestheticConfig
    depth: DepthConfig
    num_frames: int = 16
    cond_aug: float = 0.02  # noise added to the condition frames
    blend_power: float = 40.0  # stage-2 cosine blend exponent
    depth_shuffle: int = 3  # space-to-depth factor: depth at 3x latent size -> 9 channels
    depth_scale: float = 2.6666  # depth input = int(H / depth_scale / 32) * 32
    camera_radius: float = 1.5
    fov_deg: float = 49.134  # 35 mm lens on a 32 mm sensor
    seed_weights: int = field(default=0, compare=False)  # seed for random (weight-free) init

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.vae.block_out_channels) - 1)

    def with_steps(self, steps: int) -> "Hi3DConfig":
        return replace(
            self,
            stage1=replace(self.stage1, sampler=replace(self.stage1.sampler, steps=steps)),
            stage2=replace(self.stage2, sampler=replace(self.stage2.sampler, steps=steps)),
        )


def full() -> Hi3DConfig:
    """The official sizes: loads first_stage.pt / second_stage.pt and the ckpts/ files."""
    return Hi3DConfig(
        name="full",
        stage1=StageConfig(UNetConfig(in_channels=8, vector_dim=768), SamplerConfig(cfg_max=2.5), 512),
        stage2=StageConfig(UNetConfig(in_channels=17, vector_dim=512), SamplerConfig(cfg_max=2.0), 1024),
        vae=VAEConfig(),
        clip=ViTConfig(width=1280, layers=32, heads=16, mlp_dim=5120, embed_dim=1024),
        aesthetic=AestheticConfig(
            ViTConfig(width=1024, layers=24, heads=16, mlp_dim=4096, embed_dim=768, activation="quick_gelu")
        ),
        depth=DepthConfig(),
    )


def tiny() -> Hi3DConfig:
    """Same topology as `full` with a few channels: runs on a CPU in seconds."""
    unet = dict(block_out_channels=(32, 64, 64, 64), head_dim=32, cross_attention_dim=32)
    return Hi3DConfig(
        name="tiny",
        stage1=StageConfig(UNetConfig(in_channels=8, vector_dim=768, **unet), SamplerConfig(steps=4, cfg_max=2.5), 64),
        stage2=StageConfig(UNetConfig(in_channels=17, vector_dim=512, **unet), SamplerConfig(steps=4, cfg_max=2.0), 128),
        vae=VAEConfig(block_out_channels=(32, 32, 64, 64)),
        clip=ViTConfig(width=32, layers=2, heads=2, mlp_dim=64, embed_dim=32, image_size=28),
        aesthetic=AestheticConfig(
            ViTConfig(width=32, layers=2, heads=2, mlp_dim=64, embed_dim=32, image_size=28, activation="quick_gelu"),
            mlp_dims=(32, 16, 16, 8),
        ),
        depth=DepthConfig(
            hidden_size=32, layers=4, heads=2, mlp_dim=64, image_size=32, backbone_depths=(1, 1, 1),
            backbone_width=32, out_indices=(0, 1, 2, 3), neck_hidden_sizes=(128, 256, 32, 32),
            fusion_hidden_size=16, head_hidden_size=32,
        ),
    )


PRESETS = {"full": full, "tiny": tiny}


def preset(name: str) -> Hi3DConfig:
    if name not in PRESETS:
        raise InvalidInput(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
