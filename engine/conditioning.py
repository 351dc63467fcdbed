"""Hi3D's conditions, built from plain tensors (sgm GeneralConditioner + vtdm encoders).

Everything here is a pure function: the networks that produce CLIP features, aesthetic
scores, depth and VAE latents run elsewhere (behind a backend); this module only shapes
their inputs and outputs exactly as the official conditioner does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """sgm's sinusoidal embedding: [cos(t f), sin(t f)], one zero column when dim is odd."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb  # [N, dim]


def _scalar(x: float | Tensor, n: int, device: torch.device | None = None) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float32, device=device).reshape(-1).expand(n)


def stage1_vector(aesthetic: Tensor, elevation_deg: float, cond_aug: float) -> Tensor:
    """[a, emb(100 a, 255)] ++ emb(int(elevation), 256) ++ emb(cond_aug, 256) -> [N, 768]."""
    a = aesthetic.float().reshape(-1)  # [N]
    n = a.shape[0]
    elevation = _scalar(float(int(elevation_deg)), n, a.device)  # the official batch holds it as int64
    return torch.cat(
        [a[:, None], timestep_embedding(100 * a, 255), timestep_embedding(elevation, 256),
         timestep_embedding(_scalar(cond_aug, n, a.device), 256)],
        dim=-1,
    )


def stage2_vector(n: int, elevation_deg: float, cond_aug: float, device: torch.device | None = None) -> Tensor:
    """emb(int(elevation), 256) ++ emb(cond_aug, 256) -> [n, 512]."""
    elevation = _scalar(float(int(elevation_deg)), n, device)
    return torch.cat([timestep_embedding(elevation, 256), timestep_embedding(_scalar(cond_aug, n, device), 256)], -1)


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - size // 2  # size is odd
    g = torch.exp(-x**2 / (2 * sigma**2))
    return g / g.sum()


def resize_antialiased(x: Tensor, size: tuple[int, int]) -> Tensor:
    """kornia's `resize(..., interpolation="bicubic", align_corners=True, antialias=True)`,
    which sgm's FrozenOpenCLIPImageEmbedder applies: a Gaussian blur with skimage's sigma
    ((factor - 1) / 2) and a 2-sigma, odd-sized kernel, reflect-padded, then bicubic."""
    h, w = x.shape[-2:]
    blurred = x
    for axis, factor in ((-1, w / size[1]), (-2, h / size[0])):  # width first, as kornia does
        sigma = max((factor - 1.0) / 2.0, 0.001)
        k = int(max(4.0 * sigma, 3))
        k += 1 - k % 2
        kernel = _gaussian_kernel(k, sigma, x.dtype, x.device)
        shape = (1, 1, 1, k) if axis == -1 else (1, 1, k, 1)
        pad = (k // 2, k // 2, 0, 0) if axis == -1 else (0, 0, k // 2, k // 2)
        c = blurred.shape[1]
        blurred = F.conv2d(F.pad(blurred, pad, mode="reflect"), kernel.view(shape).expand(c, 1, *shape[2:]), groups=c)
    return F.interpolate(blurred, size=size, mode="bicubic", align_corners=True)


# OpenAI CLIP's pixel statistics, which its image tower was trained on.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _clip_normalise(x01: Tensor) -> Tensor:
    mean = torch.tensor(CLIP_MEAN, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    return (x01 - mean) / std


def clip_pixels(image: Tensor, size: int) -> Tensor:
    """[-1, 1] image -> OpenCLIP input: antialiased bicubic (align_corners) resize, CLIP norm."""
    x = resize_antialiased(image.float(), (size, size))
    return _clip_normalise((x + 1.0) / 2.0)  # [N, 3, size, size]


def aesthetic_pixels(image: Tensor, size: int) -> Tensor:
    """[-1, 1] image -> ViT-L/14 input: bilinear to (S, 384/224 S), centre S columns, CLIP norm.

    At S = 224 this is the official resize to 224x384 and crop of columns 80:304.
    """
    wide = round(size * 384 / 224)
    x = F.interpolate(image.float(), (size, wide), mode="bilinear")
    left = (wide - size) // 2
    return _clip_normalise((x[..., left : left + size] + 1.0) * 0.5)


def depth_input_size(resolution: int, depth_scale: float) -> int:
    """The DPT input side the official DepthEmbedder picks: int(H / 2.6666 / 32) * 32."""
    return int(resolution / depth_scale / 32) * 32


def depth_pixels(frames: Tensor, size: int) -> Tensor:
    """[-1, 1] frames -> DPT input (MiDaS' DPT takes [-1, 1] directly)."""
    return F.interpolate(frames.float(), (size, size), mode="bilinear")


def depth_channels(disparity: Tensor, latent_hw: tuple[int, int], shuffle: int) -> Tensor:
    """Per-frame min-max normalised disparity at shuffle x latent size, space-to-depth.

    disparity [N, S, S] -> [N, shuffle**2, h, w] (9 channels at 3x3).
    """
    h, w = latent_hw
    y = F.interpolate(disparity.float()[:, None], (h * shuffle, w * shuffle), mode="bilinear")
    y = y - y.amin(dim=(1, 2, 3), keepdim=True)
    y = y / y.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return F.pixel_unshuffle(y, shuffle)
