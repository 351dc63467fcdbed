"""Peak device memory of a whole generation under each memory plan, without the memory.

The real pipeline runs once (one sampler step per stage: every step has the same peak)
with the real networks at the real shapes, but the networks are built and run under
`FakeTensorMode`: their tensors have shapes and dtypes and no storage, so the full
7-network pipeline costs no memory and runs on a CPU. A `StorageTracker` (a dispatch mode)
records every storage an op creates and notices, after each op, which have been freed
(weak references), so it knows the live bytes after every op and which op reached the peak.

What is counted as device memory, per network call: the weights of the networks the plan
keeps on the device during that stage, the call's inputs (the pipeline copies them to the
device) and every storage the call creates, up to its fp32 outputs. The pipeline keeps its
own tensors (latents, conditions, frames) in host memory between calls. Not counted: the
CUDA context, cuDNN / cuBLAS workspaces and allocator fragmentation (see docs/benchmarks.md).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from hi3d.engine.backends import Networks, Placement, Runner
from hi3d.engine.config import NETWORK_NAMES, Hi3DConfig
from hi3d.engine.memory_plans import AUTO, PLANS, MemoryPlan, check_plan_name, fastest_fitting, plan_named


class StorageTracker(TorchDispatchMode):
    """Live bytes of the storages created by the ops run under it (plus those `add`ed), and
    the op after which they peaked. Works on fake and real tensors alike."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = self.peak = 0
        self.peak_op = ""

    def add(self, tensors: object) -> None:
        for t in tree_leaves(tensors):
            if isinstance(t, Tensor):
                s = t.untyped_storage()
                if s._cdata not in self.live:
                    self.live[s._cdata] = (StorageWeakRef(s), s.nbytes())
                    self.current += s.nbytes()

    def _sweep(self) -> None:
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._sweep()  # first: a freed storage's address may be reused by this op's output
        self.add(out)
        if self.current > self.peak:
            self.peak, self.peak_op = self.current, str(func.overloadpacket.__name__)
        return out


@dataclass(frozen=True)
class CallPeak:
    stage: str
    network: str
    weights_bytes: int  # the weights on the device during the call
    activation_bytes: int  # inputs + every storage the call creates, at the call's peak
    op: str  # the aten op after which the call peaked

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes


@dataclass(frozen=True)
class StagePeak:
    weights_bytes: int  # resident weights during the stage
    activation_bytes: int  # the largest call's peak activations
    peak_bytes: int  # weights + activations at the stage's peak call
    peak_at: str  # "network: op" at that peak


@dataclass(frozen=True)
class PlanEstimate:
    plan: str
    calls: tuple[CallPeak, ...] = field(repr=False)

    def stages(self) -> dict[str, StagePeak]:
        out = {}
        for stage in dict.fromkeys(c.stage for c in self.calls):
            calls = [c for c in self.calls if c.stage == stage]
            top = max(calls, key=lambda c: c.total_bytes)
            out[stage] = StagePeak(max(c.weights_bytes for c in calls), max(c.activation_bytes for c in calls),
                                   top.total_bytes, f"{top.network}: {top.op}")
        return out

    @property
    def peak(self) -> CallPeak:
        return max(self.calls, key=lambda c: c.total_bytes)

    @property
    def peak_bytes(self) -> int:
        return self.peak.total_bytes


def weight_bytes(module: nn.Module) -> int:
    return sum(t.untyped_storage().nbytes() for t in (*module.parameters(), *module.buffers()))


class _StageLog:
    """The placement the estimator hands the pipeline: records which stage runs, then
    delegates to the backend's own placement (so that its code path runs too)."""

    def __init__(self, inner: Placement):
        self.inner, self.stage = inner, ""

    def enter(self, stage: str) -> None:
        self.stage = stage
        self.inner.enter(stage)


class _TrackedRunner:
    """Runs one network under a fresh StorageTracker (inside `mode` when faking) and records
    its peak; hands the pipeline real tensors (zeros when faking: only shapes matter)."""

    def __init__(self, runner: Runner, name: str, weights: dict[str, dict[str, int]], log: _StageLog,
                 calls: list[CallPeak], mode: FakeTensorMode | None):
        self.runner, self.name, self.weights, self.log, self.calls, self.mode = runner, name, weights, log, calls, mode
        self.seen: dict[tuple, tuple[CallPeak, list, bool]] = {}

    def __call__(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        key = (self.log.stage, tuple((x.shape, x.dtype) for x in inputs))
        if self.mode is not None and key in self.seen:  # same shapes, same peak: fake runs take ~1 ms an op
            peak, shapes, is_tuple = self.seen[key]
            self.calls.append(peak)
            outs = tuple(torch.zeros(shape, dtype=dtype) for shape, dtype in shapes)
            return outs if is_tuple else outs[0]
        tracker = StorageTracker()
        with self.mode or nullcontext():
            xs = tuple(self.mode.from_tensor(x) for x in inputs) if self.mode else inputs
            tracker.add(xs)
            with tracker:
                out = self.runner(*xs)
                outs = tuple(o.float() for o in (out if isinstance(out, tuple) else (out,)))
        peak = CallPeak(self.log.stage, self.name, sum(self.weights[self.log.stage].values()),
                        tracker.peak, tracker.peak_op)
        self.calls.append(peak)
        if self.mode is not None:
            self.seen[key] = (peak, [(o.shape, o.dtype) for o in outs], isinstance(out, tuple))
            outs = tuple(torch.zeros(o.shape, dtype=o.dtype) for o in outs)
        return outs if isinstance(out, tuple) else outs[0]


def estimate_plan(cfg: Hi3DConfig, modules: dict[str, nn.Module], dtype: torch.dtype, plan: MemoryPlan,
                  mode: FakeTensorMode | None = None) -> PlanEstimate:
    """Run the pipeline once (one step per stage) under `plan`, tracking every network call.
    `modules`: built inside `mode` to estimate (fake), or real ones to measure the same way."""
    from hi3d.engine.backends.torch_backend import placed_networks, torch_networks
    from hi3d.engine.pipeline import GenerationParams, Hi3DPipeline

    if mode is None:
        nets = torch_networks(modules, torch.device("cpu"), dtype, plan=plan)
    else:  # fake_modules converted them already
        with mode:
            nets = placed_networks(modules, torch.device("cpu"), dtype, plan=plan)
    sizes = {name: weight_bytes(m) for name, m in modules.items()}
    weights = {s: {n: sizes[n] for n in plan.resident_networks(s, NETWORK_NAMES)} for s in ("stage1", "stage2")}
    log, calls = _StageLog(nets.placement), []
    tracked = {n: _TrackedRunner(r, n, weights, log, calls, mode) for n, r in nets.runners().items()}
    pipe = Hi3DPipeline(cfg, Networks(**tracked, device=nets.device, dtype=nets.dtype, plan=plan, placement=log))
    r1, r2 = cfg.stage1.resolution, cfg.stage2.resolution
    pipe(torch.zeros(1, 3, r1, r1), torch.zeros(1, 3, r2, r2), GenerationParams(steps=1))
    return PlanEstimate(plan.name, tuple(calls))


def _faked(module: nn.Module, mode: FakeTensorMode, dtype: torch.dtype) -> nn.Module:
    """`module` with every parameter and buffer rebound to a fake copy in `dtype` (floating
    ones), as torch_networks converts them; rebinding, since Module.to refuses fake tensors."""

    def fake(t: Tensor) -> Tensor:
        t = t if isinstance(t, FakeTensor) else mode.from_tensor(t)
        with mode:
            return t.to(dtype) if t.is_floating_point() else t

    with torch.no_grad():
        for m in module.modules():
            for k, p in m._parameters.items():
                if p is not None:
                    m._parameters[k] = nn.Parameter(fake(p), requires_grad=False)
            for k, b in m._buffers.items():
                if b is not None:
                    m._buffers[k] = fake(b)
    return module


def fake_modules(cfg: Hi3DConfig, dtype: torch.dtype) -> tuple[FakeTensorMode, dict[str, nn.Module]]:
    """Every network with fake parameters in `dtype` (the aesthetic MLP in fp32, as
    torch_networks leaves it); use them inside the returned mode. The depth network is built
    for real and then faked: transformers' BiT reads tensor values while it is built (drop-path
    rates via .tolist()), which fake tensors cannot give (~0.5 GB at full size, briefly)."""
    from hi3d.engine.models import build_network

    mode = FakeTensorMode()
    modules = {}
    for name in NETWORK_NAMES:
        if name == "depth":
            modules[name] = _faked(build_network(cfg, name), mode, dtype)
        else:
            with mode:
                modules[name] = build_network(cfg, name)
            _faked(modules[name], mode, dtype)
    _faked(modules["aesthetic"].mlp, mode, torch.float32)
    return mode, modules


def estimate_plans(cfg: Hi3DConfig, dtype: torch.dtype, plans: tuple[str, ...] = tuple(PLANS)) -> dict[str, PlanEstimate]:
    """Fake-tensor estimates of `plans` at the preset's real shapes (seconds to a minute on a CPU)."""
    mode, modules = fake_modules(cfg, dtype)
    return {name: estimate_plan(cfg, modules, dtype, plan_named(name), mode) for name in plans}


def resolve_plan(name: str, cfg: Hi3DConfig, device: torch.device, dtype: torch.dtype,
                 free_bytes: int | None = None, log=print) -> MemoryPlan:
    """A plan by name; `auto`: the fastest whose estimate fits `free_bytes` (default: the CUDA
    device's free memory now; off CUDA there is no device memory to save: resident)."""
    if check_plan_name(name) != AUTO:
        return plan_named(name)
    if free_bytes is None:
        if torch.device(device).type != "cuda":
            return PLANS["resident"]
        free_bytes = torch.cuda.mem_get_info(device)[0]
    peaks = {n: e.peak_bytes for n, e in estimate_plans(cfg, dtype).items()}
    plan, fits = fastest_fitting(peaks, free_bytes)
    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    log(f"memory plan auto -> {plan.name}: estimated peak {gib(peaks[plan.name])}, {gib(free_bytes)} free"
        + ("" if fits else " (no plan fits: trying the smallest)"))
    return plan
