"""Image -> 16 orbit views at stage-1 resolution -> 16 refined views at stage-2 resolution.

Backend-agnostic: every network is a `Runner` from `engine.backends`; the networks' memory
plan (engine/memory_plans.py) says how to cut the big calls, and their `placement` is told
which stage runs. Randomness comes
from one CPU `torch.Generator` seeded per call, drawn in a fixed order, so a seed gives
the same views on any device and backend (up to the backend's numerics).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from hi3d.engine import conditioning as cond
from hi3d.engine import sampling
from hi3d.engine.backends import Networks, Runner
from hi3d.engine.config import Hi3DConfig, StageConfig
from hi3d.engine.errors import InvalidInput

Progress = Callable[[str, int, int], None]  # (stage, step, total)


MAX_STEPS = 200  # a bound on the work one request can ask for (the official sampler uses 25)


@dataclass(frozen=True)
class GenerationParams:
    """What a caller chooses per generation; checked once, here, on construction."""

    elevation: float = 0.0  # degrees; the model was trained on -10..40
    seed: int = 0
    steps: int | None = None  # None: the preset's (25 for `full`)
    cfg_max1: float | None = None  # guidance of the last frame, stage 1 (None: 2.5)
    cfg_max2: float | None = None  # likewise for stage 2 (None: 2.0)

    def __post_init__(self) -> None:
        if not -90.0 <= self.elevation <= 90.0:  # also refuses NaN
            raise InvalidInput(f"elevation must be in [-90, 90] degrees, got {self.elevation}")
        if self.steps is not None and not 1 <= self.steps <= MAX_STEPS:
            raise InvalidInput(f"steps must be in [1, {MAX_STEPS}], got {self.steps}")
        if not 0 <= self.seed < 2**63:
            raise InvalidInput(f"seed must be in [0, 2**63), got {self.seed}")


@dataclass(frozen=True)
class StageConditions:
    """What one stage's UNet is conditioned on, as the CFG batch [uncond, cond]."""

    context: Tensor  # [2, 1, D] CLIP embedding (zeros in the uncond row)
    vector: Tensor  # [2, V] the same in both rows
    concat: Tensor  # [2, F, C, h, w] channels appended to the noisy latent (zeros when uncond)

    def to(self, device: torch.device) -> "StageConditions":
        return StageConditions(self.context.to(device), self.vector.to(device), self.concat.to(device))


@dataclass(frozen=True)
class Views:
    stage1: Tensor  # [F, 3, R1, R1] in [-1, 1]
    stage2: Tensor  # [F, 3, R2, R2] in [-1, 1]


class Hi3DPipeline:
    def __init__(self, cfg: Hi3DConfig, nets: Networks):
        self.cfg = cfg
        self.nets = nets

    # --- helpers -------------------------------------------------------------------
    def _run(self, runner: Runner, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        out = runner(*(x.to(self.nets.device, self.nets.dtype) for x in xs))
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()

    def _encode_mode(self, images: Tensor) -> Tensor:
        mean, _ = self._run(self.nets.vae_encoder, images)
        return mean

    def _cfg_batch(self, context: Tensor, vector: Tensor, concat: Tensor) -> StageConditions:
        """Uncond row first: CLIP context and concat channels zeroed, vector kept (as upstream)."""
        return StageConditions(
            context=torch.cat([torch.zeros_like(context), context])[:, None],
            vector=torch.cat([vector, vector]),
            concat=torch.stack([torch.zeros_like(concat), concat]),
        )

    # --- conditions ----------------------------------------------------------------
    def stage1_conditions(self, image: Tensor, elevation: float, g: torch.Generator) -> StageConditions:
        """image [1, 3, R1, R1] in [-1, 1] -> conditions of the stage-1 UNet."""
        c, n = self.cfg, self.cfg.num_frames
        noisy = image + c.cond_aug * torch.randn(image.shape, generator=g)
        latent = self._encode_mode(noisy)  # [1, 4, h, w], unscaled
        context = self._run(self.nets.clip, cond.clip_pixels(image, c.clip.image_size))  # [1, D]
        aesthetic = self._run(self.nets.aesthetic, cond.aesthetic_pixels(image, c.aesthetic.clip.image_size))
        vector = cond.stage1_vector(aesthetic.cpu(), elevation, c.cond_aug)
        return self._cfg_batch(context.cpu(), vector, latent.cpu().expand(n, -1, -1, -1))

    def stage2_inputs(self, image: Tensor, views1: Tensor) -> Tensor:
        """Frame 0: the input image at R2; frames 1..: stage-1 views bilinearly upsampled."""
        r2 = self.cfg.stage2.resolution
        up = F.interpolate(views1[1:].float(), (r2, r2), mode="bilinear")
        return torch.cat([image, up])  # [F, 3, R2, R2]

    def stage2_conditions(self, frames: Tensor, elevation: float, g: torch.Generator) -> StageConditions:
        """frames [F, 3, R2, R2] in [-1, 1] -> conditions of the stage-2 UNet."""
        c = self.cfg
        noisy = frames + c.cond_aug * torch.randn(frames.shape, generator=g)
        latents = torch.cat([self._encode_mode(f[None]).cpu() for f in noisy])  # per frame, as upstream
        size = cond.depth_input_size(frames.shape[-1], c.depth_scale)
        disparity = torch.cat([self._run(self.nets.depth, cond.depth_pixels(f[None], size)).cpu() for f in noisy])
        depth = cond.depth_channels(disparity, latents.shape[-2:], c.depth_shuffle)  # [F, 9, h, w]
        context = self._run(self.nets.clip, cond.clip_pixels(frames[:1], c.clip.image_size)).cpu()
        vector = cond.stage2_vector(1, elevation, c.cond_aug)
        return self._cfg_batch(context, vector, torch.cat([depth, latents], dim=1))

    def blend_references(self, frames: Tensor, g: torch.Generator) -> Tensor:
        """Scaled posterior *samples* of the clean stage-2 inputs (upstream samples, not modes)."""
        refs = []
        for f in frames:
            mean, logvar = self._run(self.nets.vae_encoder, f[None])
            eps = torch.randn(mean.shape, generator=g)
            refs.append((mean.cpu() + torch.exp(0.5 * logvar.cpu()) * eps) * self.cfg.vae.scaling_factor)
        return torch.cat(refs)  # [F, 4, h, w]

    # --- sampling ------------------------------------------------------------------
    def sample(
        self,
        unet: Runner,
        stage: StageConfig,
        conds: StageConditions,
        noise: Tensor,  # [F, 4, h, w] unit Gaussian
        steps: int,
        cfg_max: float,
        blend_refs: Tensor | None = None,  # [F, 4, h, w] stage 2 only
        progress: Progress | None = None,
        name: str = "stage",
    ) -> Tensor:  # [F, 4, h, w] scaled latents
        # The loop runs where the networks do: on a GPU no latent crosses to the host per step
        # (the draws were made on the CPU generator before, so a seed means the same noise).
        s, dev = stage.sampler, self.nets.device
        sigmas = sampling.edm_sigmas(steps, s.sigma_min, s.sigma_max, s.rho)
        scales = sampling.cfg_scales(noise.shape[0], s.cfg_min, cfg_max).to(dev)
        conds, noise = conds.to(dev), noise.to(dev)
        blend_refs = blend_refs.to(dev) if blend_refs is not None else None
        x = sampling.initial_latent(noise, float(sigmas[0]))
        for i in range(steps):
            sigma = sigmas[i]
            if blend_refs is not None:
                alpha = sampling.blend_alpha(i, steps, self.cfg.blend_power)
                x = sampling.blend(x, noise, blend_refs, sigma, alpha)
            _, _, c_in, c_noise = sampling.v_scalings(sigma)
            sample = torch.cat([(c_in * x).expand(2, *x.shape), conds.concat], dim=2)  # [2, F, C, h, w]
            out = self._unet(unet, sample, c_noise.expand(2), conds.context, conds.vector)
            d = sampling.denoised(x, out, sigma)  # [2, F, 4, h, w]
            x = sampling.euler_step(x, sampling.guide(d[0], d[1], scales), sigma, sigmas[i + 1])
            if progress:
                progress(name, i + 1, steps)
        return x

    def _unet(self, unet: Runner, sample: Tensor, c_noise: Tensor, context: Tensor, vector: Tensor) -> Tensor:
        """One UNet call on the CFG batch, or (plan.split_cfg) one per row: each row of the
        batch is computed independently, so two half batches are the same arithmetic."""
        if not self.nets.plan.split_cfg:
            return self._run(unet, sample, c_noise, context, vector)
        rows = [self._run(unet, sample[i : i + 1], c_noise[i : i + 1], context[i : i + 1], vector[i : i + 1])
                for i in range(sample.shape[0])]
        return torch.cat(rows)

    def decode(self, latents: Tensor, chunk: int) -> Tensor:
        """Scaled latents -> [-1, 1] pixels, `chunk` frames at a time (upstream: 16 then 1)."""
        z = latents / self.cfg.vae.scaling_factor
        out = [self._run(self.nets.vae_decoder, z[i : i + chunk]).cpu() for i in range(0, len(z), chunk)]
        return torch.cat(out).clamp(-1.0, 1.0)

    # --- the whole path ------------------------------------------------------------
    def generate_stage1(self, image1: Tensor, p: GenerationParams, progress: Progress | None = None) -> Tensor:
        """image1 [1, 3, R1, R1] -> views [F, 3, R1, R1]. Draws: cond noise, then latent noise."""
        c = self.cfg
        self.nets.placement.enter("stage1")
        g = torch.Generator().manual_seed(p.seed)
        conds = self.stage1_conditions(image1, p.elevation, g)
        h = c.stage1.resolution // c.latent_factor
        noise = torch.randn((c.num_frames, c.vae.latent_channels, h, h), generator=g)
        steps = p.steps or c.stage1.sampler.steps
        cfg_max = p.cfg_max1 if p.cfg_max1 is not None else c.stage1.sampler.cfg_max
        latents = self.sample(self.nets.unet1, c.stage1, conds, noise, steps, cfg_max, None, progress, "stage1")
        return self.decode(latents, chunk=self.nets.plan.decode_frames or c.num_frames)

    def generate_stage2(
        self, image2: Tensor, views1: Tensor, p: GenerationParams, progress: Progress | None = None
    ) -> Tensor:
        """image2 [1, 3, R2, R2] + stage-1 views -> views [F, 3, R2, R2]."""
        c = self.cfg
        self.nets.placement.enter("stage2")
        g = torch.Generator().manual_seed(p.seed + 1)  # independent of stage 1's draws
        frames = self.stage2_inputs(image2, views1)
        conds = self.stage2_conditions(frames, p.elevation, g)
        refs = self.blend_references(frames, g)
        noise = torch.randn(refs.shape, generator=g)
        steps = p.steps or c.stage2.sampler.steps
        cfg_max = p.cfg_max2 if p.cfg_max2 is not None else c.stage2.sampler.cfg_max
        latents = self.sample(self.nets.unet2, c.stage2, conds, noise, steps, cfg_max, refs, progress, "stage2")
        return self.decode(latents, chunk=1)

    def __call__(
        self, image1: Tensor, image2: Tensor, p: GenerationParams, progress: Progress | None = None
    ) -> Views:
        """image1/image2: the preprocessed input at R1 and R2, [1, 3, R, R] in [-1, 1]."""
        for name, img, r in (("image1", image1, self.cfg.stage1.resolution), ("image2", image2, self.cfg.stage2.resolution)):
            if tuple(img.shape) != (1, 3, r, r):
                raise InvalidInput(f"{name} must have shape (1, 3, {r}, {r}), got {tuple(img.shape)}")
        views1 = self.generate_stage1(image1, p, progress)
        views2 = self.generate_stage2(image2, views1, p, progress)
        return Views(stage1=views1, stage2=views2)
