"""Reconstruction settings as data, with three presets.

- `test`: tiny, for the test suite (well under a minute on one CPU core).
- `cpu_small`: the CPU default (the demo): 16 views at 128 px, a few minutes on 2 cores.
- `gpu`: 1024 px views, bigger fields, on CUDA with the fused kernels; the target is <= 5 s on one
  H100, not yet measured (`bench/gpu_report.sh` times it as `recon.*` in its pipeline run).
Every preset bakes the input views into a 2048^2 texture atlas (`test`: 256^2).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from hi3d.engine.errors import InvalidInput


@dataclass(frozen=True)
class GaussianFitConfig:
    """3D Gaussian Splatting fit to the orbit views (Kerbl et al. 2023, simplified)."""

    num_init: int = 1500  # Gaussians sampled uniformly inside the unit sphere's inner part
    init_radius: float = 0.6  # the orbit cameras frame a sphere of radius ~0.68 at distance 1.5
    steps: int = 200
    views_per_step: int = 1
    lr_means: float = 1.6e-3  # x the scene extent (1), decayed x0.1 by the end
    lr_scales: float = 5e-3  # log-scales
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2  # logits
    lr_colors: float = 2.5e-2  # RGB logits (view-independent color: Hi3D views are diffuse)
    ssim_weight: float = 0.2  # loss = (1 - w) L1 + w (1 - SSIM) + alpha_weight * L1(alpha, mask)
    alpha_weight: float = 0.5
    densify_from: int = 50
    densify_until: int = 150  # stop densifying 3/4 of the way, as the reference schedule does
    densify_every: int = 50
    split_scale: float = 0.02  # Gaussians larger than this (max axis, world units) split, others clone
    prune_opacity: float = 0.02
    max_gaussians: int = 50_000


@dataclass(frozen=True)
class NeuSConfig:
    """Hash-grid NeuS (Wang et al. 2021 + instant-nsr-pl) fit to real + interpolated views."""

    n_levels: int = 8  # hash grid: L levels of F features, 2**log2_hashmap_size rows
    n_features_per_level: int = 2
    log2_hashmap_size: int = 16
    base_resolution: int = 16
    max_resolution: int = 256
    hidden: int = 64  # width of the SDF and color MLPs (one hidden layer each)
    geo_features: int = 15  # SDF MLP outputs 1 + geo_features (fed to the color MLP)
    init_radius: float = 0.5  # SDF starts as a sphere of this radius (geometric init)
    steps: int = 600
    rays_per_step: int = 512
    samples_per_ray: int = 48  # stratified within the ray's chord of the unit sphere
    lr: float = 1e-2
    lr_variance: float = 1e-2
    lr_warmup_steps: int = 0  # lr ramps up linearly over these first steps (Adam's first steps move every parameter by ~lr)
    init_variance: float = 0.3  # s = exp(10 * variance) sharpens the density as it is learnt
    eikonal_weight: float = 0.1
    eikonal_points: int = 2048  # random points in the sphere + ray samples, finite differences
    mask_weight: float = 0.1
    fd_epsilon: float = 1e-3  # finite-difference step of the SDF gradient (world units)
    # Thin-part options, measured (docs/reconstruction.md#thin-parts) but off in every preset:
    # on the table they close the top's holes but lower its IoU and cost ~12 % more NeuS work.
    hull_resolution: int = 0  # visual hull of the 16 masks on this grid over [-1, 1]^3 (0: none; measured: 128) ...
    hull_init_steps: int = 100  # ... the SDF first fitted to its signed distance for this many steps ...
    hull_points: int = 4096  # ... on this many points a step ...
    hull_weight: float = 0.0  # ... and SDF values below the distance to the hull penalised (free space)
    curvature_weight: float = 0.0  # mean |Laplacian of the SDF| at surface points (Neuralangelo; measured: 2e-3) ...
    curvature_points: int = 512  # ... drawn from the ray samples by rendering weight ...
    curvature_epsilon: float = 0.01  # ... with second differences at this step (world units)
    coarse_levels: int = 2  # coarse-to-fine: hash-grid levels on at the start ...
    coarse_to_fine_steps: int = 0  # ... then one more every (this / the rest) steps (0: all from the start)


@dataclass(frozen=True)
class TextureConfig:
    """Baking the input views into a UV texture atlas (engine.recon.texture)."""

    enabled: bool = True  # False: the mesh keeps only its vertex colors (--vertex-colors)
    size: int = 2048  # atlas width = height, texels (--texture-size)
    padding: int = 2  # texels xatlas leaves between charts
    cosine_power: float = 4.0  # a view's weight: cos(normal, direction to the camera) ** power
    depth_tolerance: float = 0.005  # world units a texel may lie behind the z-buffer and still count as seen ...
    depth_tolerance_px: float = 2.0  # ... plus this many pixel footprints (slopes, the 3x3 min of the z-buffer)
    dilation: int = 8  # texels the colors are pushed out past chart borders, so filtering never reads empty texels


@dataclass(frozen=True)
class ReconConfig:
    image_size: int = 128  # views are resized to this square size for NeuS (and rendered at it)
    gs_image_size: int = 64  # ... and to this size for the 3DGS fit
    num_interp: int = 16  # M: extra views rendered from the 3DGS between orbit views
    mc_resolution: int = 128  # marching-cubes grid over [-1, 1]^3
    seed: int = 0
    device: str = "cpu"
    kernel_impl: str = "auto"  # rasterizer / hash grid implementation ("torch" on CPU)
    gaussians: GaussianFitConfig = field(default_factory=GaussianFitConfig)
    neus: NeuSConfig = field(default_factory=NeuSConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)


def recon_preset(name: str) -> ReconConfig:
    if name == "cpu_small":
        return ReconConfig()
    if name == "test":
        return ReconConfig(
            image_size=48,
            gs_image_size=32,
            num_interp=16,
            mc_resolution=48,
            gaussians=GaussianFitConfig(num_init=500, steps=80, densify_from=20, densify_until=60, densify_every=20),
            neus=replace(
                NeuSConfig(), n_levels=4, log2_hashmap_size=12, max_resolution=64, hidden=32, steps=150,
                rays_per_step=256, samples_per_ray=32, eikonal_points=512,
            ),
            texture=TextureConfig(size=256),
        )
    if name == "gpu":
        return ReconConfig(
            image_size=1024,
            gs_image_size=512,
            mc_resolution=256,
            device="cuda",
            gaussians=GaussianFitConfig(num_init=10_000, steps=1500, views_per_step=4, densify_until=1100, densify_every=200, densify_from=200),
            neus=replace(
                NeuSConfig(), n_levels=16, log2_hashmap_size=19, max_resolution=2048, steps=2000,
                rays_per_step=8192, samples_per_ray=96, eikonal_points=8192,
            ),
        )
    raise InvalidInput(f"unknown reconstruction preset {name!r}; choose one of {PRESETS}")


PRESETS = ("cpu_small", "test", "gpu")


def recon_options(preset: str | None = None, seed: int = 0, num_interp: int | None = None,
                  cuda_available: bool = False, texture_size: int | None = None,
                  vertex_colors: bool = False) -> ReconConfig:
    """The preset a user named (default: gpu with CUDA, else cpu_small) with their seed, M and
    texture choices, checked once: the one way every entry point turns choices into a ReconConfig."""
    name = preset or ("gpu" if cuda_available else "cpu_small")
    cfg = replace(recon_preset(name), seed=seed)
    if texture_size is not None:
        if texture_size < 16:
            raise InvalidInput(f"texture-size must be >= 16 texels, got {texture_size}")
        cfg = replace(cfg, texture=replace(cfg.texture, size=texture_size))
    if vertex_colors:
        cfg = replace(cfg, texture=replace(cfg.texture, enabled=False))
    if num_interp is not None:
        if num_interp < 0:
            raise InvalidInput(f"interp (M, the interpolated views) must be >= 0, got {num_interp}")
        cfg = replace(cfg, num_interp=num_interp)
    if cfg.device.startswith("cuda") and not cuda_available:
        raise InvalidInput(f"reconstruction preset {name!r} needs a CUDA device; use cpu_small")
    return cfg
