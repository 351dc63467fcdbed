"""The memory estimator against reality on the CPU: its tracker by hand, the fake-tensor
run against the same tracker on real tensors (5 %), and a real call against torch.profiler's
memory timeline (15 %), at the tiny preset and a medium one."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import Action

from hi3d.bench.memory import main as memory_main
from hi3d.engine.backends.torch_backend import load_modules, torch_networks
from hi3d.engine.config import tiny
from hi3d.engine.memory_estimate import StorageTracker, estimate_plan, fake_modules
from hi3d.engine.memory_plans import LEAN, RESIDENT


def medium():
    """The tiny topology at 2x the resolutions (stage-2 latents 32 x 32), still seconds on a CPU."""
    t = tiny()
    return replace(t, name="medium", stage1=replace(t.stage1, resolution=128), stage2=replace(t.stage2, resolution=256))


def test_tracker_counts_live_storages_by_hand():
    x = torch.zeros(1000)  # 4000 bytes, created outside: not counted
    with StorageTracker() as t:
        y = x * 2  # 4000 live
        z = y + 1  # 8000 live: the peak
        del y
        w = z.view(10, 100) * 3  # z and w: 8000 again (the view shares z's storage)
    assert (t.peak, t.peak_op, t.current) == (8000, "add", 8000)
    del z, w


def _profiler_peak(prof) -> int:
    """Peak bytes alive over a profile, from its allocation timeline (allocations made before it: 0)."""
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("make_cfg", [tiny, medium], ids=["tiny", "medium"])
def test_fake_estimate_matches_real_tensors_and_the_profiler(make_cfg):
    cfg, dtype = make_cfg(), torch.float32
    (mode, fake), modules = fake_modules(cfg, dtype), load_modules(cfg)
    for plan in (RESIDENT, LEAN):
        estimated = estimate_plan(cfg, fake, dtype, plan, mode)
        real = estimate_plan(cfg, modules, dtype, plan)  # the same tracker on real tensors
        assert [(c.stage, c.network) for c in estimated.calls] == [(c.stage, c.network) for c in real.calls]
        for e, r in zip(estimated.calls, real.calls):
            assert e.weights_bytes == r.weights_bytes
            assert abs(e.activation_bytes - r.activation_bytes) <= 0.05 * r.activation_bytes, (e, r)

    # The largest call (the stage-2 UNet on the CFG batch), real, under torch.profiler.
    nets = torch_networks(modules, torch.device("cpu"), dtype)
    unet = nets.unet2
    lat = cfg.stage2.resolution // cfg.latent_factor
    inputs = tuple(unet.module.sample_inputs(2, lat).values())
    with StorageTracker() as tracker:
        unet(*inputs)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        unet(*inputs)
    measured = _profiler_peak(prof)
    assert abs(tracker.peak - measured) <= 0.15 * measured, (tracker.peak, measured)
    stage2 = estimated.stages()["stage2"]  # lean: each half batch peaks lower than the CFG batch
    assert stage2.activation_bytes < tracker.peak


def test_the_command_writes_every_plan(tmp_path, capsys):
    out = tmp_path / "memory.json"
    assert memory_main(["--preset", "tiny", "--dtype", "fp32", "--out", str(out)]) == 0
    plans = json.loads(out.read_text())["plans"]
    assert list(plans) == ["resident", "staged", "lean"]
    # Plans only take memory away: staged drops weights, lean also activations.
    assert plans["resident"]["peak_bytes"] > plans["staged"]["peak_bytes"] > plans["lean"]["peak_bytes"]
    for p in plans.values():
        for s in p["stages"].values():
            assert s["peak_bytes"] <= s["weights_bytes"] + s["activation_bytes"]
    printed = capsys.readouterr().out
    assert "official configuration" in printed and "28 GB reported" in printed
