"""The EDM sampler of both stages (sgm EulerEDMSampler + VScalingWithEDMcNoise), as pure functions."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def edm_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float) -> Tensor:
    """Karras et al. discretization, descending, with a final 0: [steps + 1]."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def v_scalings(sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in, c_noise) of v-prediction with EDM noise (sigma_data = 1)."""
    c_skip = 1.0 / (sigma**2 + 1.0)
    c_out = -sigma / (sigma**2 + 1.0) ** 0.5
    c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


def initial_latent(noise: Tensor, sigma_max: float) -> Tensor:
    """The starting latent: unit noise scaled to the first sigma's marginal."""
    return noise * math.sqrt(1.0 + sigma_max**2)


def cfg_scales(num_frames: int, cfg_min: float, cfg_max: float) -> Tensor:
    """Per-frame guidance (sgm LinearPredictionGuider): frame 0 cfg_min ... last cfg_max."""
    return torch.linspace(cfg_min, cfg_max, num_frames)


def guide(x_uncond: Tensor, x_cond: Tensor, scales: Tensor) -> Tensor:
    """x_u + s_t (x_c - x_u) per frame t. x_*: [F, C, h, w], scales: [F]."""
    s = scales.to(x_cond).view(-1, *([1] * (x_cond.ndim - 1)))
    return x_uncond + s * (x_cond - x_uncond)


def denoised(x: Tensor, network_out: Tensor, sigma: Tensor) -> Tensor:
    """D(x) = c_skip x + c_out F(c_in x)."""
    c_skip, c_out, _, _ = v_scalings(sigma)
    return x * c_skip + network_out * c_out


def euler_step(x: Tensor, x_denoised: Tensor, sigma: float | Tensor, next_sigma: float | Tensor) -> Tensor:
    """One deterministic Euler step of the probability-flow ODE (no churn)."""
    d = (x - x_denoised) / sigma
    return x + (next_sigma - sigma) * d


def blend_alpha(step: int, steps: int, power: float) -> float:
    """Stage-2 pull towards the stage-1 latents: (0.5 (1 + cos(i / steps)))**power."""
    return (0.5 * (1.0 + math.cos(step / steps))) ** power


def blend(x: Tensor, noise: Tensor, reference: Tensor, sigma: float | Tensor, alpha: float) -> Tensor:
    """x <- (1 - alpha) x + alpha (noise * sigma + reference), before each stage-2 Euler step."""
    return (1.0 - alpha) * x + alpha * (noise * sigma + reference)
