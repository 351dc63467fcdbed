"""One export spec per network: tensor names, dynamic axes, sample inputs, TensorRT
profiles and the parity tolerance ONNX Runtime must meet against torch.

Shapes are tuples of ints (static) and names (dynamic dims). A name maps to a `Dim`
range: `min/opt/max` become the TensorRT optimization profile, `export` is the size the
tracer sees (never 1: the legacy exporter may specialise size-1 dims), and parity runs
at `min` and at `opt` (or at the dim's `parity` size, see Dim), so a shape baked into the
graph at trace time fails parity.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from hi3d.engine.conditioning import depth_input_size
from hi3d.engine.config import NETWORK_NAMES, Hi3DConfig

MAX_BATCH = 8  # requests the server may batch into one UNet call (x2 with CFG fits in 8)
OPSET = 17


@dataclass(frozen=True)
class Dim:
    min: int
    opt: int
    max: int
    export: int
    # When set, CPU parity runs at this size instead of min/opt, and the dim is exported
    # dynamic even where the profile fixes it, so that one graph runs at both: a full UNet
    # at its 64x64 / 128x128 latent costs the host minutes and tens of GB per ONNX Runtime
    # call (attention over 16 frames of 4096 tokens), at 8x8 seconds. It must differ from
    # `export` for parity to catch a size baked in at trace time.
    parity: int | None = None

    def __post_init__(self):
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"inconsistent dim range {self}")
        if self.parity is None and not self.min <= self.export <= self.max:
            raise ValueError(f"export size outside the dim range {self}")
        if self.parity is not None and (self.parity == self.export or min(self.parity, self.export) < 2):
            raise ValueError(f"parity and export sizes must differ and be at least 2: {self}")

    @property
    def dynamic(self) -> bool:
        return self.min != self.max or self.parity is not None


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]
    # How parity/sample inputs are drawn, matching what the pipeline feeds:
    # ("normal", mean, std) or ("uniform", low, high).
    dist: tuple[str, float, float] = ("normal", 0.0, 1.0)


@dataclass(frozen=True)
class ExportSpec:
    network: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: tuple[tuple[str, Dim], ...]
    atol: float  # ORT-vs-torch parity: |ort - torch| <= atol + rtol * |torch| elementwise
    rtol: float
    tolerance_note: str  # why these tolerances

    @property
    def dim_ranges(self) -> dict[str, Dim]:
        return dict(self.dims)

    def sizes(self, which: str) -> dict[str, int]:
        """Concrete dim sizes: which is 'min', 'opt', 'max' or 'export'."""
        return {name: getattr(d, which) for name, d in self.dims}

    def parity_sizes(self, point: str) -> dict[str, int]:
        """The dim sizes CPU parity runs at for `point` ('min', 'opt'): a dim's `parity`
        size where it has one, else the point's."""
        return {name: getattr(d, point) if d.parity is None else d.parity for name, d in self.dims}

    def shape(self, tensor: TensorSpec, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(s if isinstance(s, int) else sizes[s] for s in tensor.shape)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx.export's dynamic_axes: every named dim that is not fixed."""
        ranges = self.dim_ranges
        axes = {}
        for t in self.inputs + self.outputs:
            named = {i: s for i, s in enumerate(t.shape) if isinstance(s, str)}
            named = {i: s for i, s in named.items() if s not in ranges or ranges[s].dynamic}
            if named:
                axes[t.name] = named
        return axes

    def sample_inputs(self, sizes: dict[str, int], seed: int = 0) -> tuple[Tensor, ...]:
        """Seeded fp32 CPU inputs at the given dim sizes."""
        g = torch.Generator().manual_seed(seed)
        out = []
        for t in self.inputs:
            kind, a, b = t.dist
            shape = self.shape(t, sizes)
            if kind == "normal":
                out.append(torch.randn(shape, generator=g) * b + a)
            else:
                out.append(torch.rand(shape, generator=g) * (b - a) + a)
        return tuple(out)

    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT optimization profile: input name -> (min, opt, max) shapes."""
        return {t.name: tuple(self.shape(t, self.sizes(w)) for w in ("min", "opt", "max")) for t in self.inputs}

    def fingerprint(self) -> str:
        """Hash of everything that shapes the exported graph (part of the artifact key)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def _batch(max_: int, opt: int = 1) -> Dim:
    return Dim(1, opt, max_, export=2)


def _ladder(low: int, high: int) -> Dim:
    """A spatial dim used at two resolutions (stage 1 and stage 2)."""
    return Dim(low, high, high, export=low)


def depth_size(cfg: Hi3DConfig) -> int:
    """Side of the depth model's input at the stage-2 resolution (384 in `full`)."""
    return depth_input_size(cfg.stage2.resolution, cfg.depth_scale)


def network_config(cfg: Hi3DConfig, network: str) -> str:
    """The part of the configuration one network's weights and graph depend on (the
    sampler settings, say, do not: changing them must not invalidate an export)."""
    part = {
        "clip": cfg.clip,
        "aesthetic": cfg.aesthetic,
        "vae_encoder": cfg.vae,
        "vae_decoder": cfg.vae,
        "unet1": (cfg.stage1.unet, cfg.num_frames),
        "unet2": (cfg.stage2.unet, cfg.num_frames),
        "depth": cfg.depth,
    }[network]
    return repr(part)


# UNet latents the tracer and CPU parity see. Three 2x downsamplings leave 2x2 (export) and
# 1x1 (parity) at the innermost level; the engine profile keeps the stage's own latent.
UNET_EXPORT_LATENT = 16
UNET_PARITY_LATENT = 8


def _unet(cfg: Hi3DConfig, stage: int) -> ExportSpec:
    sc = cfg.stage1 if stage == 1 else cfg.stage2
    u, h = sc.unet, sc.resolution // cfg.latent_factor
    c_noise_range = (0.25 * math.log(sc.sampler.sigma_min), 0.25 * math.log(sc.sampler.sigma_max))
    return ExportSpec(
        network=f"unet{stage}",
        inputs=(
            TensorSpec("sample", ("B", cfg.num_frames, u.in_channels, "h", "w")),
            TensorSpec("c_noise", ("B",), ("uniform", *c_noise_range)),
            TensorSpec("context", ("B", 1, u.cross_attention_dim)),
            # Sinusoidal embeddings (and the aesthetic score, ~5) live in about [-1, 1].
            TensorSpec("vector", ("B", u.vector_dim), ("uniform", -1.0, 1.0)),
        ),
        outputs=(TensorSpec("v_pred", ("B", cfg.num_frames, u.out_channels, "h", "w")),),
        # B = 1 (one branch) or 2 (uncond + cond); the server batches up to MAX_BATCH.
        dims=(
            ("B", Dim(1, 2, MAX_BATCH, export=2)),
            ("h", Dim(h, h, h, export=UNET_EXPORT_LATENT, parity=UNET_PARITY_LATENT)),
            ("w", Dim(h, h, h, export=UNET_EXPORT_LATENT, parity=UNET_PARITY_LATENT)),
        ),
        atol=2e-3,
        rtol=1e-3,
        tolerance_note=(
            "deep net (dozens of GroupNorm/attention/conv layers); ORT fuses GroupNorm, "
            "LayerNorm, GELU and attention and reorders sums. At the 8x8 parity latent the "
            "innermost level is 1x1; in the tiny UNets that leaves 1-2 channels per GroupNorm "
            "group, where the variance is close to eps and fp32 rounding is amplified to ~1e-3 "
            "on outputs of magnitude ~1; 2e-3 + 1e-3*|x| still fails any real graph error "
            "(O(1) output)."
        ),
    )


def _image_tower(cfg: Hi3DConfig, network: str) -> ExportSpec:
    vit = cfg.clip if network == "clip" else cfg.aesthetic.clip
    s = vit.image_size
    out = TensorSpec("image_embeds", ("N", vit.embed_dim)) if network == "clip" else TensorSpec("score", ("N", 1))
    return ExportSpec(
        network=network,
        inputs=(TensorSpec("pixels", ("N", 3, s, s)),),  # CLIP-normalised: roughly N(0, 1)
        outputs=(out,),
        # One image per video, x2 for CFG; batched requests up to MAX_BATCH.
        dims=(("N", _batch(2 * MAX_BATCH)),),
        atol=1e-4,
        rtol=1e-4,
        tolerance_note=(
            "pre-norm ViT: LayerNorm keeps activations O(1); ORT's fused attention and "
            "GELU differ from torch by a few fp32 ulps per layer (~1e-6 observed in tiny)."
        ),
    )


def _vae_encoder(cfg: Hi3DConfig) -> ExportSpec:
    f = cfg.latent_factor
    r1, r2 = cfg.stage1.resolution, cfg.stage2.resolution
    return ExportSpec(
        network="vae_encoder",
        inputs=(TensorSpec("image", ("N", 3, "H", "W"), ("uniform", -1.0, 1.0)),),
        outputs=(TensorSpec("mean", ("N", 4, "h", "w")), TensorSpec("logvar", ("N", 4, "h", "w"))),
        # Stage 1 encodes one 512 image; stage 2 encodes 16 frames at 1024.
        dims=(("N", _batch(cfg.num_frames)), ("H", _ladder(r1, r2)), ("W", _ladder(r1, r2))),
        atol=1e-4,
        rtol=1e-4,
        tolerance_note=(
            f"conv + GroupNorm stack with one mid-block attention; latents are O(1) and "
            f"~1e-6 errors were observed in tiny. H, W are multiples of {f}."
        ),
    )


def _vae_decoder(cfg: Hi3DConfig) -> ExportSpec:
    f = cfg.latent_factor
    h1, h2 = cfg.stage1.resolution // f, cfg.stage2.resolution // f
    return ExportSpec(
        network="vae_decoder",
        # Unscaled latents = scaled latents / 0.18215: std ~5.5.
        inputs=(TensorSpec("latent", ("N", cfg.vae.latent_channels, "h", "w"), ("normal", 0.0, 1 / cfg.vae.scaling_factor)),),
        outputs=(TensorSpec("image", ("N", 3, "H", "W")),),
        # Stage 1 decodes 16 frames at once; stage 2 one at a time upstream, batches here.
        dims=(("N", _batch(cfg.num_frames)), ("h", _ladder(h1, h2)), ("w", _ladder(h1, h2))),
        atol=5e-4,
        rtol=5e-4,
        tolerance_note=(
            "mirror of the encoder with more upsampling convs and inputs of std ~5.5; "
            "~1.5e-5 observed in tiny; the pipeline clamps to [-1, 1] and quantises to "
            "8 bits (4e-3 per level), far coarser than this bound."
        ),
    )


def _depth(cfg: Hi3DConfig) -> ExportSpec:
    s = depth_size(cfg)
    return ExportSpec(
        network="depth",
        inputs=(TensorSpec("pixels", ("N", 3, s, s), ("uniform", -1.0, 1.0)),),
        outputs=(TensorSpec("disparity", ("N", s, s)),),
        dims=(("N", _batch(cfg.num_frames)),),  # the 16 stage-2 condition frames
        atol=1e-4,
        rtol=1e-3,
        tolerance_note=(
            "BiT ResNet (BatchNorm folded by the exporter, weight-standardised convs) + ViT "
            "+ DPT head; stage 2 min-max normalises each depth map, so only relative "
            "errors matter; the rtol covers the disparity's arbitrary scale."
        ),
    )


def export_specs(cfg: Hi3DConfig) -> dict[str, ExportSpec]:
    """network name -> its spec, for every network the pipeline runs."""
    specs = {
        "clip": _image_tower(cfg, "clip"),
        "aesthetic": _image_tower(cfg, "aesthetic"),
        "vae_encoder": _vae_encoder(cfg),
        "vae_decoder": _vae_decoder(cfg),
        "unet1": _unet(cfg, 1),
        "unet2": _unet(cfg, 2),
        "depth": _depth(cfg),
    }
    assert tuple(specs) == NETWORK_NAMES
    return specs
