"""Memory plans: every plan computes the views `resident` computes; bad names are refused."""
from __future__ import annotations

import pytest
import torch

from hi3d.cli import main
from hi3d.engine import memory_estimate
from hi3d.engine.backends.torch_backend import load_modules, torch_networks
from hi3d.engine.config import tiny
from hi3d.engine.errors import InvalidInput
from hi3d.engine.memory_plans import LEAN, PLANS, RESIDENT, STAGE_NETWORKS, STAGED, fastest_fitting
from hi3d.engine.pipeline import GenerationParams, Hi3DPipeline
from hi3d.export.backends import EngineOptions


def _views(cfg, plan, dtype):
    g = torch.Generator().manual_seed(0)
    r1, r2 = cfg.stage1.resolution, cfg.stage2.resolution
    images = torch.rand(1, 3, r1, r1, generator=g) * 2 - 1, torch.rand(1, 3, r2, r2, generator=g) * 2 - 1
    nets = torch_networks(load_modules(cfg), torch.device("cpu"), dtype, plan=plan)
    return nets, Hi3DPipeline(cfg, nets)(*images, GenerationParams(elevation=10.0, seed=3))


def test_staged_computes_exactly_the_resident_views_and_follows_the_stages():
    cfg = tiny().with_steps(2)
    _, ref = _views(cfg, RESIDENT, torch.float32)
    nets, staged = _views(cfg, STAGED, torch.float32)
    assert torch.equal(staged.stage1, ref.stage1) and torch.equal(staged.stage2, ref.stage2)
    assert nets.placement.on_device == set(STAGE_NETWORKS["stage2"])  # stage 1's unet1 and aesthetic left


def test_lean_is_the_same_arithmetic_as_resident():
    # In float64 the CFG split, per-frame decode and chunked feed-forward agree with the
    # batched calls to rounding (measured: bit for bit). In float32 they differ by the random
    # tiny network's own fp32 rounding (~3e-4 per UNet call, fp32 vs fp64), amplified by sampling.
    cfg = tiny().with_steps(1)
    _, ref = _views(cfg, RESIDENT, torch.float64)
    _, lean = _views(cfg, LEAN, torch.float64)
    assert (lean.stage1 - ref.stage1).abs().max() <= 1e-6
    assert (lean.stage2 - ref.stage2).abs().max() <= 1e-6
    assert ref.stage2.std() > 1e-3  # views, not constants


def test_an_unknown_plan_is_refused_naming_the_choices(tmp_path, capsys):
    with pytest.raises(InvalidInput, match="auto, resident, staged, lean"):
        EngineOptions(memory_plan="foo")
    assert main(["generate", str(tmp_path / "x.png"), "--out", str(tmp_path), "--memory-plan", "foo"]) == 2
    assert "unknown memory plan 'foo'; choose one of auto, resident, staged, lean" in capsys.readouterr().err


def test_auto_takes_the_fastest_plan_that_fits(monkeypatch):
    peaks = {"resident": 30, "staged": 20, "lean": 10}
    assert fastest_fitting(peaks, 30) == (RESIDENT, True)
    assert fastest_fitting(peaks, 29) == (STAGED, True)
    assert fastest_fitting(peaks, 10) == (LEAN, True)
    assert fastest_fitting(peaks, 9) == (LEAN, False)

    class Estimate:
        def __init__(self, peak):
            self.peak_bytes = peak

    monkeypatch.setattr(memory_estimate, "estimate_plans",
                        lambda cfg, dtype: {n: Estimate(p << 30) for n, p in peaks.items()})
    pick = lambda free: memory_estimate.resolve_plan(  # noqa: E731
        "auto", tiny(), torch.device("cpu"), torch.float16, free_bytes=free, log=lambda _: None)
    assert pick(24 << 30) is STAGED  # the 24 GB edge GPU
    assert pick(139 << 30) is RESIDENT
    assert memory_estimate.resolve_plan("auto", tiny(), torch.device("cpu"), torch.float32) is RESIDENT
    assert set(PLANS) == set(peaks)
