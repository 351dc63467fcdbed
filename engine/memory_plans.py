"""Memory plans: which networks stay on the device, and how the big calls are cut.

One registry, PLANS, of frozen dataclasses, fastest first. Every plan computes the same
views (the CFG split and per-frame decode are the same arithmetic in smaller batches);
they differ only in peak device memory and speed. `auto` is not a plan but a choice among
them: the fastest whose estimate (hi3d.engine.memory_estimate) fits the free device memory.
"""
from __future__ import annotations

from dataclasses import dataclass

from hi3d.engine.errors import InvalidInput

AUTO = "auto"

# The networks each stage calls: what a staged plan keeps on the device while it runs.
STAGE_NETWORKS: dict[str, tuple[str, ...]] = {
    "stage1": ("unet1", "clip", "aesthetic", "vae_encoder", "vae_decoder"),
    "stage2": ("unet2", "depth", "vae_encoder", "clip", "vae_decoder"),
}


@dataclass(frozen=True)
class MemoryPlan:
    name: str
    summary: str
    staged: bool = False  # only the running stage's networks on the device, the others in host memory
    split_cfg: bool = False  # the UNet's CFG batch as two half batches (uncond, then cond)
    decode_frames: int | None = None  # frames per stage-1 VAE decode (None: all 16 in one call, as upstream)
    ff_chunk: int | None = None  # UNet feed-forward chunk over the frame batch (None: unchunked)

    def resident_networks(self, stage: str, all_networks: tuple[str, ...]) -> tuple[str, ...]:
        """The networks on the device while `stage` runs."""
        return STAGE_NETWORKS[stage] if self.staged else all_networks


RESIDENT = MemoryPlan("resident", "every network on the device (fastest, most memory)")
STAGED = MemoryPlan("staged", "only the running stage's networks on the device; the others wait in host memory",
                    staged=True)
LEAN = MemoryPlan("lean", "staged, plus the CFG batch as two half batches, per-frame VAE decode and "
                  "chunked UNet feed-forward", staged=True, split_cfg=True, decode_frames=1, ff_chunk=4)

PLANS: dict[str, MemoryPlan] = {p.name: p for p in (RESIDENT, STAGED, LEAN)}  # fastest first
PLAN_CHOICES = (AUTO, *PLANS)


def check_plan_name(name: str) -> str:
    if name not in PLAN_CHOICES:
        raise InvalidInput(f"unknown memory plan {name!r}; choose one of {', '.join(PLAN_CHOICES)}")
    return name


def plan_named(name: str) -> MemoryPlan:
    """A concrete plan (not `auto`: resolve that with `fastest_fitting`)."""
    if check_plan_name(name) == AUTO:
        raise ValueError("`auto` is a choice among plans, resolved against the device's free memory")
    return PLANS[name]


def fastest_fitting(peak_bytes: dict[str, int], free_bytes: int) -> tuple[MemoryPlan, bool]:
    """The fastest plan whose estimated peak fits `free_bytes`, and whether any fits (else the
    smallest, so that the run still tries)."""
    for plan in PLANS.values():
        if peak_bytes[plan.name] <= free_bytes:
            return plan, True
    return min(PLANS.values(), key=lambda p: peak_bytes[p.name]), False
