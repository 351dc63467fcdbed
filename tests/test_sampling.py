"""Sampler math against hand-computed values and an analytic denoiser."""
import math

import pytest
import torch

from hi3d.engine import sampling
from hi3d.engine.backends import Networks
from hi3d.engine.config import NETWORK_NAMES, SamplerConfig, StageConfig, UNetConfig, tiny
from hi3d.engine.pipeline import Hi3DPipeline, StageConditions


def test_edm_sigmas_hand_values():
    s = sampling.edm_sigmas(3, 0.002, 700.0, 7.0)
    mid = ((700 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7
    assert s.tolist() == pytest.approx([700.0, mid, 0.002, 0.0], rel=1e-6)
    full = sampling.edm_sigmas(25, 0.002, 700.0, 7.0)
    assert len(full) == 26 and full[0] == pytest.approx(700.0) and full[24] == pytest.approx(0.002)
    assert torch.all(full[:-1] > full[1:])


def test_v_scalings_hand_values():
    c_skip, c_out, c_in, c_noise = sampling.v_scalings(torch.tensor([1.0, 3.0]))
    assert c_skip.tolist() == pytest.approx([0.5, 0.1])
    assert c_out.tolist() == pytest.approx([-1 / math.sqrt(2), -3 / math.sqrt(10)])
    assert c_in.tolist() == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(10)])
    assert c_noise.tolist() == pytest.approx([0.0, 0.25 * math.log(3.0)])


def test_cfg_scales_and_guide():
    s = sampling.cfg_scales(16, 1.0, 2.5)
    assert s[0] == 1.0 and s[-1] == 2.5 and s[1] == pytest.approx(1.1)
    xu, xc = torch.zeros(16, 1, 2, 2), torch.ones(16, 1, 2, 2)
    g = sampling.guide(xu, xc, s)
    assert torch.allclose(g[:, 0, 0, 0], s)  # x_u + s (x_c - x_u) with x_u = 0, x_c = 1


def test_euler_step_to_zero_returns_denoised():
    x, d = torch.randn(4), torch.randn(4)
    assert torch.allclose(sampling.euler_step(x, d, 2.0, 0.0), d)
    assert torch.allclose(sampling.euler_step(x, d, 2.0, 1.0), x + (1.0 - 2.0) * (x - d) / 2.0)


def test_blend_alpha_hand_values():
    assert sampling.blend_alpha(0, 25, 40) == 1.0
    assert sampling.blend_alpha(24, 25, 40.0) == pytest.approx((0.5 * (1 + math.cos(0.96))) ** 40)
    x, n, z = torch.ones(3), torch.full((3,), 2.0), torch.full((3,), 5.0)
    assert torch.allclose(sampling.blend(x, n, z, 3.0, 1.0), torch.full((3,), 11.0))  # n * sigma + z
    assert torch.allclose(sampling.blend(x, n, z, 3.0, 0.0), x)


class _AnalyticUNet:
    """v-prediction network output of the exact denoiser for data ~ N(0, sd^2)."""

    def __init__(self, sd: float):
        self.sd = sd

    def __call__(self, sample, c_noise, context, vector):
        sigma = torch.exp(4 * c_noise[0])
        c_skip, c_out, c_in, _ = sampling.v_scalings(sigma)
        x = sample[:, :, :4] / c_in
        exact = x * self.sd**2 / (self.sd**2 + sigma**2)
        return (exact - c_skip * x) / c_out


def test_sampler_solves_the_probability_flow_ode():
    """With the exact denoiser of N(0, sd^2) data, x(0) = x_T * sd / sqrt(sd^2 + sigma_max^2)."""
    cfg = tiny()
    sd, steps = 0.5, 400  # Euler is first order: at 25 steps it is ~16% off, at 400 ~1%
    stage = StageConfig(UNetConfig(8, 768), SamplerConfig(steps=steps), 64)
    # Only the sampler runs: the UNet is `denoiser` below; the other networks are never called.
    nets = Networks(**{name: None for name in NETWORK_NAMES}, device=torch.device("cpu"), dtype=torch.float32)
    pipe = Hi3DPipeline(cfg, nets=nets)
    f = cfg.num_frames
    conds = StageConditions(torch.zeros(2, 1, 4), torch.zeros(2, 8), torch.zeros(2, f, 4, 2, 2))
    noise = torch.randn(f, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    out = pipe.sample(_AnalyticUNet(sd), stage, conds, noise, steps, cfg_max=2.5)
    x_t = noise * math.sqrt(1 + 700.0**2)
    exact = x_t * sd / math.sqrt(sd**2 + 700.0**2)
    assert torch.allclose(out, exact, rtol=0.02, atol=1e-4)
    assert not torch.allclose(out, torch.zeros_like(out))


def test_the_sampling_loop_stays_on_the_networks_device():
    """Networks on the meta device (no data, no copy to the host possible): every UNet input of
    every step is on that device and so is the result, i.e. no latent crosses to the host per step
    (what keeps a GPU's sampling loop, served or not, free of host round trips)."""
    cfg = tiny()
    stage = StageConfig(UNetConfig(8, 768), SamplerConfig(steps=3), 64)
    seen = []

    def unet(sample, c_noise, context, vector):
        seen.extend(t.device.type for t in (sample, c_noise, context, vector))
        return sample[:, :, :4] * 0.5

    meta = torch.device("meta")
    nets = Networks(**{name: None for name in NETWORK_NAMES}, device=meta, dtype=torch.float32)
    f = cfg.num_frames
    conds = StageConditions(torch.zeros(2, 1, 4), torch.zeros(2, 8), torch.zeros(2, f, 4, 2, 2))  # made on the CPU
    noise, refs = torch.randn(f, 4, 2, 2), torch.randn(f, 4, 2, 2)
    out = Hi3DPipeline(cfg, nets=nets).sample(unet, stage, conds, noise, 3, cfg_max=2.5, blend_refs=refs)
    assert out.device == meta and out.shape == noise.shape
    assert seen == ["meta"] * 12  # 3 steps x 4 inputs
