"""PyTorch runners: eager (the reference for every parity test) and torch.compile'd."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from hi3d.engine.backends import Networks, Runner
from hi3d.engine.config import Hi3DConfig
from hi3d.engine.memory_plans import RESIDENT, STAGE_NETWORKS, MemoryPlan
from hi3d.engine.models import build_networks


class TorchRunner:
    """Runs a module without autograd, casting floating inputs to the module's dtype."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, compile: bool = False):
        self.module = module.eval()
        self.dtype = dtype
        self.fn = torch.compile(self.module, mode="max-autotune-no-cudagraphs") if compile else self.module

    @torch.inference_mode()
    def __call__(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        return self.fn(*(x.to(self.dtype) if x.is_floating_point() else x for x in inputs))


def _tensor_slots(module: nn.Module) -> list[tuple[dict, str]]:
    """Every (owner dict, key) holding a parameter or buffer: what moving a module rebinds."""
    slots = []
    for m in module.modules():
        slots += [(m._parameters, k) for k, p in m._parameters.items() if p is not None]
        slots += [(m._buffers, k) for k, b in m._buffers.items() if b is not None]
    return slots


class StagedPlacement:
    """Keeps only the running stage's modules on the device; the others wait in host memory.

    Each module's weights get one host copy (pinned on CUDA, so that copies to the device
    are asynchronous); evicting a module rebinds it to that copy, which frees the device
    copy without copying anything back (inference never writes weights). Bringing a module
    in copies on a side CUDA stream, so that it overlaps the networks that run first; the
    module's runner makes the compute stream wait for that copy before its first call. On
    the CPU host and device are one memory: the same code runs and moves nothing.
    """

    def __init__(self, modules: dict[str, nn.Module], device: torch.device, stages: dict[str, tuple[str, ...]]):
        self.device, self.stages = device, stages
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.slots = {name: _tensor_slots(m) for name, m in modules.items()}
        self.host = {}
        for name, slots in self.slots.items():
            host = [d[k].detach().to("cpu") for d, k in slots]
            self.host[name] = [t.pin_memory() for t in host] if self.cuda else host
            self._bind(name, self.host[name])
        self.on_device: set[str] = set()
        self.ready: dict[str, torch.cuda.Event] = {}

    def _bind(self, name: str, tensors: list[Tensor]) -> None:
        for (d, k), t in zip(self.slots[name], tensors):
            if isinstance(d[k], nn.Parameter):
                d[k].data = t
            else:
                d[k] = t

    def enter(self, stage: str) -> None:
        wanted = set(self.stages[stage])
        for name in sorted(self.on_device - wanted):  # free first: the peak is one stage's weights
            self._bind(name, self.host[name])
            self.on_device.discard(name)
        for name in sorted(wanted - self.on_device):
            self._bind(name, self._to_device(self.host[name]))
            self.on_device.add(name)
            if self.cuda:
                self.ready[name] = self.stream.record_event()

    def _to_device(self, tensors: list[Tensor]) -> list[Tensor]:
        if not self.cuda:
            return [t.to(self.device) for t in tensors]
        with torch.cuda.stream(self.stream):
            out = [t.to(self.device, non_blocking=True) for t in tensors]
        for t in out:  # used (and finally freed) on the compute stream, not the copy stream
            t.record_stream(torch.cuda.current_stream(self.device))
        return out

    def wait(self, name: str) -> None:
        """Before `name` runs: its weights must have arrived."""
        event = self.ready.pop(name, None)
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)


class PlacedRunner:
    """A runner whose module a StagedPlacement moves: waits for the module's weights first."""

    def __init__(self, runner: Runner, name: str, placement: StagedPlacement):
        self.runner, self.name, self.placement = runner, name, placement

    def __call__(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        self.placement.wait(self.name)
        return self.runner(*inputs)


def set_ff_chunk(module: nn.Module, chunk: int | None) -> None:
    """diffusers' feed-forward chunking on every transformer block (None: off). Spatial blocks
    chunk their [B*F, HW, C] input over dim 0 (frames); temporal blocks fix dim 1 (frames)."""
    for m in module.modules():
        if hasattr(m, "set_chunk_feed_forward"):
            m.set_chunk_feed_forward(chunk, dim=0)


def load_modules(cfg: Hi3DConfig, weights: Path | None = None) -> dict[str, nn.Module]:
    """Random (seeded) networks, or the official weights when `weights` names their folder."""
    modules = build_networks(cfg, seed=cfg.seed_weights)
    if weights is not None:
        from hi3d.engine.checkpoints import load_official_weights

        load_official_weights(cfg, modules, Path(weights))
    return modules


def torch_networks(
    modules: dict[str, nn.Module], device: torch.device, dtype: torch.dtype, compile: bool = False,
    plan: MemoryPlan = RESIDENT,
) -> Networks:
    # A staged plan never puts every network on the device at once, not even while loading.
    target = torch.device("cpu") if plan.staged else device
    for m in modules.values():
        m.to(device=target, dtype=dtype)
    # The aesthetic MLP runs in fp32 upstream (its input is L2-normalised numpy features).
    modules["aesthetic"].mlp.float()
    return placed_networks(modules, device, dtype, compile, plan)


def placed_networks(
    modules: dict[str, nn.Module], device: torch.device, dtype: torch.dtype, compile: bool = False,
    plan: MemoryPlan = RESIDENT,
) -> Networks:
    """Runners of modules already in `dtype` (on `device`, or on the host for a staged plan),
    with the plan's chunking and placement. The memory estimator enters here: fake-tensor
    modules cannot be moved with Module.to (it swaps fake parameters, which refuses)."""
    for name in ("unet1", "unet2"):
        set_ff_chunk(modules[name], plan.ff_chunk)
    runners: dict[str, Runner] = {name: TorchRunner(m, dtype, compile) for name, m in modules.items()}
    if not plan.staged:
        return Networks(**runners, device=device, dtype=dtype, plan=plan)
    placement = StagedPlacement(modules, device, STAGE_NETWORKS)
    runners = {name: PlacedRunner(r, name, placement) for name, r in runners.items()}
    return Networks(**runners, device=device, dtype=dtype, plan=plan, placement=placement)
