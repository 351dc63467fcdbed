"""Per-stage latency of the Hi3D pipeline on one or two backends.

    python -m hi3d.bench.latency --preset tiny --backend torch [--device cpu] [--dtype fp32]
        [--warmup 1 --iters 3] [--steps N] [--out results/latency.json]
    python -m hi3d.bench.latency --preset tiny --compare torch,onnxruntime

The real `Hi3DPipeline` runs end to end; its stage methods and its runners are wrapped
with timers, so every figure comes from the production code path. With `--compare A,B`
both backends are built in one process and their iterations interleave (A, B, A, B, ...),
so a load spike on a shared machine hits both; the ratios B/A per component are the
figures to trust. Components (ms, median / p90 / min over iterations; per-step figures
over every step of every iteration):

  stage1.conditions  VAE encode + CLIP + aesthetic of the input image
  stage1.unet_step   one UNet call on the CFG batch (network only)
  stage1.sample      the whole stage-1 sampling loop
  stage1.decode      VAE decode of the stage-1 latents
  stage2.conditions  per-frame VAE encode + depth + CLIP of the stage-2 inputs
  stage2.depth       the 16 depth-network calls inside stage2.conditions
  stage2.blend_refs  VAE posterior samples the stage-2 sampler blends towards
  stage2.unet_step / stage2.sample / stage2.decode   as for stage 1
  recon.*            reconstruction of a rendered sphere (3DGS, then NeuS + marching cubes)
  end_to_end         image in, stage-2 views (and mesh, if timed) out
"""
from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from hi3d.bench.common import (
    COMPONENTS,
    NOISE_NOTE,
    PeakRSS,
    Recorder,
    cuda_peak_bytes,
    format_table,
    machine_info,
    mib,
    reset_cuda_peak,
    summarize,
)
from hi3d.engine.backends import DTYPES, Networks, Runner
from hi3d.engine.backends.torch_backend import load_modules
from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.config import PRESETS, Hi3DConfig, StageConfig
from hi3d.engine.errors import InvalidInput
from hi3d.engine.files import atomic_write_json
from hi3d.engine.memory_plans import PLAN_CHOICES
from hi3d.engine.pipeline import GenerationParams, Hi3DPipeline
from hi3d.engine.recon import reconstruct
from hi3d.engine.recon.config import recon_preset
from hi3d.engine.recon.mesh_render import render_mesh
from hi3d.engine.recon.shapes import SHAPES
from hi3d.export.backends import BACKENDS, EngineOptions


@dataclass
class BenchSetup:
    opts: EngineOptions
    cfg: Hi3DConfig
    threads: int = 0  # torch and ONNX Runtime threads (0: the libraries' own)
    modules: dict[str, nn.Module] | None = None  # torch and compiled share them: loaded once

    @property
    def device(self) -> torch.device:
        return self.opts.torch_device

    @property
    def dtype(self) -> torch.dtype:
        return self.opts.torch_dtype

    def networks(self, backend: str) -> Networks:
        if BACKENDS[backend].served_as == "python" and self.modules is None:
            self.modules = load_modules(self.cfg, self.opts.weights)
        # The same thread count for ONNX Runtime as for torch: a ratio compares runtimes, not thread pools.
        return BACKENDS[backend].build(self.opts.request(self.cfg, modules=self.modules, threads=self.threads))


class _TimedRunner:
    """A runner that adds each call's duration to `recorder` under `<stage>.<name>`."""

    def __init__(self, runner: Runner, name: str, recorder: Recorder, stage: list[str]):
        self.runner, self.name, self.recorder, self.stage = runner, name, recorder, stage

    def __call__(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        with self.recorder.span(f"{self.stage[0]}.{self.name}"):
            return self.runner(*inputs)


def instrument(pipe: Hi3DPipeline, recorder: Recorder, stage_peaks: dict[str, int] | None = None) -> None:
    """Wrap the pipeline's stage methods and runners (on this instance only) with timers;
    `stage_peaks` gets torch.cuda.max_memory_allocated of each stage (the largest seen)."""
    stage = ["stage1"]  # which stage the wrapped calls belong to, set by generate_stage1/2
    nets = pipe.nets
    pipe.nets = replace(nets, **{n: _TimedRunner(r, n, recorder, stage) for n, r in nets.runners().items()})

    def wrap(method: str, label: str | None = None, set_stage: str | None = None) -> None:
        inner = getattr(pipe, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if set_stage:
                stage[0] = set_stage
                reset_cuda_peak(recorder.device)
            try:
                with recorder.span(f"{stage[0]}.{label or method}"):
                    return inner(*args, **kwargs)
            finally:
                peak = cuda_peak_bytes(recorder.device)
                if set_stage and peak is not None and stage_peaks is not None:
                    stage_peaks[set_stage] = max(peak, stage_peaks.get(set_stage, 0))

        setattr(pipe, method, timed)

    wrap("generate_stage1", "total", set_stage="stage1")
    wrap("generate_stage2", "total", set_stage="stage2")
    for method in ("stage1_conditions", "stage2_conditions"):
        wrap(method, "conditions")
    for method in ("blend_references", "sample", "decode"):
        wrap(method, {"blend_references": "blend_refs"}.get(method))


def recon_run(cfg: Hi3DConfig, device: torch.device) -> Callable[[Recorder], None]:
    """A timed reconstruction of a rendered object (the tiny preset's views are noise, so the
    generated views are not what is reconstructed)."""
    rcfg = recon_preset("test" if cfg.name == "tiny" else ("gpu" if device.type == "cuda" else "cpu_small"))
    gt = SHAPES["sphere"].mesh(96)
    rgba = render_mesh(gt.vertices, gt.faces, gt.colors, hi3d_cameras(0.0, rcfg.image_size))
    views = torch.from_numpy(rgba[..., :3]).permute(0, 3, 1, 2).contiguous()

    def run(recorder: Recorder) -> None:
        starts: dict[str, float] = {}  # first progress call of each phase
        progress = lambda stage, step, total, loss: starts.setdefault(stage, time.perf_counter())  # noqa: E731
        t0 = time.perf_counter()
        reconstruct(views, 0.0, rcfg, progress)
        t1 = time.perf_counter()
        recorder.add("recon.total", t1 - t0)
        if "gaussians" in starts and "neus" in starts:
            recorder.add("recon.3dgs", starts["neus"] - t0)
        if "neus" in starts:  # NeuS fit + marching cubes + colouring
            recorder.add("recon.neus", t1 - starts["neus"])

    return run


def run_once(pipe: Hi3DPipeline, recorder: Recorder, images: tuple[Tensor, Tensor], steps: int,
             recon: Callable[[Recorder], None]) -> None:
    p = GenerationParams(seed=0, steps=steps)
    with recorder.span("end_to_end"):
        pipe(*images, p)
        recon(recorder)


def collapse(recorder: Recorder, iters: int) -> dict[str, dict[str, float]]:
    """Per-component statistics: per call for unet steps, per iteration (summed) otherwise."""
    out = {}
    for name, samples in recorder.samples.items():
        if name.endswith(".unet1") or name.endswith(".unet2"):
            out[name.split(".")[0] + ".unet_step"] = summarize(samples)
        elif name in COMPONENTS:
            out[name] = summarize(samples)
    for stage in ("stage1", "stage2"):
        depth = recorder.samples.get(f"{stage}.depth")
        if depth and len(depth) % iters == 0:  # calls per iteration -> one sum per iteration
            k = len(depth) // iters
            out[f"{stage}.depth"] = summarize([sum(depth[i * k:(i + 1) * k]) for i in range(iters)])
    return {k: out[k] for k in sorted(out, key=COMPONENTS.index)}


def bench(backends: list[str], setup: BenchSetup, warmup: int, iters: int, steps: int) -> dict[str, Any]:
    """Build each backend, warm it up, then time `iters` interleaved iterations of all of them."""
    g = torch.Generator().manual_seed(0)
    r1, r2 = setup.cfg.stage1.resolution, setup.cfg.stage2.resolution
    images = (torch.rand(1, 3, r1, r1, generator=g) * 2 - 1, torch.rand(1, 3, r2, r2, generator=g) * 2 - 1)
    recon = recon_run(setup.cfg, setup.device)
    pipes, recorders, peaks, stage_peaks = {}, {}, {}, {}
    for b in backends:
        recorders[b], stage_peaks[b] = Recorder(setup.device), {}
        pipes[b] = Hi3DPipeline(setup.cfg, setup.networks(b))
        instrument(pipes[b], recorders[b], stage_peaks[b])
        peaks[b] = {"rss": 0, "cuda": None}
        print(f"[{b}] warm-up: {warmup} iteration(s)", flush=True)
        for _ in range(warmup):
            run_once(pipes[b], Recorder(setup.device), images, steps, recon)
    for i in range(iters):
        for b in backends:
            gc.collect()
            reset_cuda_peak(setup.device)
            with PeakRSS() as rss:
                run_once(pipes[b], recorders[b], images, steps, recon)
            peaks[b]["rss"] = max(peaks[b]["rss"], rss.peak_bytes)
            cuda = cuda_peak_bytes(setup.device)
            peaks[b]["cuda"] = cuda if cuda is None else max(cuda, peaks[b]["cuda"] or 0)
            e2e = recorders[b].samples["end_to_end"][-1]
            print(f"[{b}] iteration {i + 1}/{iters}: {e2e:.2f} s", flush=True)
    results = {}
    for b in backends:
        results[b] = {
            "components": collapse(recorders[b], iters),
            "peak_rss_mib": mib(peaks[b]["rss"]),
            "peak_cuda_allocated_mib": mib(peaks[b]["cuda"]),
            "peak_cuda_allocated_mib_by_stage": {k: mib(v) for k, v in stage_peaks[b].items()},
            "memory_plan": pipes[b].nets.plan.name,
        }
    return results


def network_calls(cfg: Hi3DConfig, device: torch.device, dtype: torch.dtype) -> dict[str, tuple[str, list[tuple[Tensor, ...]]]]:
    """{component: (network, [inputs of each call])}: the calls one pipeline stage makes,
    at the pipeline's shapes (CFG batch of 2, all frames per stage-1 decode, one per stage-2 decode)."""
    g = torch.Generator().manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)  # noqa: E731
    f, lat1, lat2 = cfg.num_frames, cfg.stage1.resolution // cfg.latent_factor, cfg.stage2.resolution // cfg.latent_factor

    def unet_call(stage: StageConfig, lat: int) -> tuple[Tensor, ...]:
        u = stage.unet
        return rnd(2, f, u.in_channels, lat, lat), rnd(2), rnd(2, 1, u.cross_attention_dim), rnd(2, u.vector_dim)

    return {
        "stage1.unet_step": ("unet1", [unet_call(cfg.stage1, lat1)]),
        "stage2.unet_step": ("unet2", [unet_call(cfg.stage2, lat2)]),
        "stage1.decode": ("vae_decoder", [(rnd(f, cfg.vae.latent_channels, lat1, lat1),)]),
        "stage2.decode": ("vae_decoder", [(rnd(1, cfg.vae.latent_channels, lat2, lat2),) for _ in range(f)]),
    }


def bench_networks(backends: list[str], setup: BenchSetup, warmup: int, iters: int) -> dict[str, Any]:
    """Each stage's network calls alone (no sampler, no conditions), interleaved over backends."""
    calls = network_calls(setup.cfg, setup.device, setup.dtype)
    nets = {b: setup.networks(b) for b in backends}
    recorders = {b: Recorder(setup.device) for b in backends}
    peaks: dict[str, int | None] = {b: None for b in backends}
    for b in backends:
        print(f"[{b}] warm-up: {warmup} iteration(s)", flush=True)
        for _ in range(warmup):
            for net, inputs in calls.values():
                for x in inputs:
                    getattr(nets[b], net)(*x)
    for i in range(iters):
        for b in backends:
            reset_cuda_peak(setup.device)
            for comp, (net, inputs) in calls.items():
                with recorders[b].span(comp):
                    for x in inputs:
                        getattr(nets[b], net)(*x)
            cuda = cuda_peak_bytes(setup.device)
            peaks[b] = cuda if cuda is None else max(cuda, peaks[b] or 0)
        print(f"iteration {i + 1}/{iters} done", flush=True)
    return {b: {"components": recorders[b].summary(), "peak_rss_mib": None, "peak_cuda_allocated_mib": mib(peaks[b])}
            for b in backends}


def ratios(results: dict[str, Any], base: str, other: str) -> dict[str, float]:
    """other / base of the median per component present in both (< 1: `other` is faster)."""
    a, b = results[base]["components"], results[other]["components"]
    return {k: b[k]["median_ms"] / a[k]["median_ms"] for k in a if k in b and a[k]["median_ms"] > 0}


def print_report(report: dict[str, Any]) -> None:
    backends = list(report["backends"])
    m = report["machine"]
    print(f"\npreset {report['preset']}, {report['steps']} steps, {m['device']} {m.get('gpu', m['cpu'])}, "
          f"{report['dtype']}, memory plan {report['memory_plan']}, {report['iters']} iterations after "
          f"{report['warmup']} warm-up")
    names = [c for c in COMPONENTS if any(c in report["backends"][b]["components"] for b in backends)]
    headers = ["component"] + [f"{b} {s}" for b in backends for s in ("median ms", "p90", "min")]
    rows = []
    for c in names:
        row: list[Any] = [c]
        for b in backends:
            s = report["backends"][b]["components"].get(c)
            row += [s["median_ms"], s["p90_ms"], s["min_ms"]] if s else [None] * 3
        rows.append(row)
    for label, key in (("peak RSS MiB", "peak_rss_mib"), ("peak CUDA MiB", "peak_cuda_allocated_mib")):
        rows.append([label] + sum(([report["backends"][b][key], None, None] for b in backends), []))
    for st in ("stage1", "stage2"):
        rows.append([f"peak CUDA MiB {st}"] + sum(([report["backends"][b].get("peak_cuda_allocated_mib_by_stage", {})
                                                     .get(st), None, None] for b in backends), []))
    print(format_table(headers, rows))
    if "ratios" in report:
        (pair, r), = report["ratios"].items()
        print(f"\nratio {pair} (median; < 1 means {pair.split('/')[0]} is faster)")
        print(format_table(["component", "ratio"], [[k, v] for k, v in r.items()]))
    print(f"\n{NOISE_NOTE}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description="Per-stage latency of the Hi3D pipeline")
    ap.add_argument("--preset", default="tiny", choices=list(PRESETS))
    ap.add_argument("--backend", default="torch", choices=list(BACKENDS))
    ap.add_argument("--compare", help="two backends, comma-separated, e.g. torch,onnxruntime (overrides --backend)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", choices=list(DTYPES), help="default: fp16 on CUDA, fp32 on CPU")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first (>= 0)")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations (>= 1)")
    ap.add_argument("--steps", type=int, help="sampling steps per stage (default: the preset's)")
    ap.add_argument("--weights", type=Path, help="official weights folder (default: random weights)")
    ap.add_argument("--artifacts", type=Path, default=Path("build"), help="ONNX / engine folder (onnxruntime, tensorrt)")
    ap.add_argument("--networks-only", action="store_true",
                    help="time each stage's network calls alone (UNet steps, VAE decodes), not the pipeline")
    ap.add_argument("--threads", type=int,
                    help="CPU threads of torch and ONNX Runtime (default: 1 on CPU; the libraries' own on CUDA)")
    ap.add_argument("--memory-plan", default="resident", choices=PLAN_CHOICES,
                    help="engine/memory_plans.py (docs/generation.md#memory-plans)")
    ap.add_argument("--out", type=Path, help="write the report here as JSON")
    args = ap.parse_args(argv)

    backends = args.compare.split(",") if args.compare else [args.backend]
    if len(backends) != len(set(backends)) or not 1 <= len(backends) <= 2:
        ap.error(f"--compare takes two different backends, got {args.compare!r}")
    if args.iters < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        ap.error("need --iters >= 1, --warmup >= 0, --threads >= 1")
    try:
        for b in backends:
            if b not in BACKENDS:
                raise InvalidInput(f"--compare: unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
        opts = EngineOptions(preset=args.preset, weights=args.weights, backend=backends[0], device=args.device,
                             dtype=args.dtype, artifacts=args.artifacts, memory_plan=args.memory_plan)
        cfg = opts.config()
        steps = GenerationParams(steps=args.steps).steps or cfg.stage1.sampler.steps
    except InvalidInput as e:
        ap.error(str(e))
    # On a shared machine OpenMP's worker threads spin against other jobs: one thread ran the
    # tiny VAE encoder 20x faster than two on this project's 2-core machines.
    threads = args.threads or (1 if opts.torch_device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    setup = BenchSetup(opts, cfg, threads)

    report: dict[str, Any] = {
        "preset": cfg.name, "steps": steps, "dtype": str(setup.dtype).removeprefix("torch."),
        "warmup": args.warmup, "iters": args.iters, "machine": machine_info(setup.device),
        "memory_plan": args.memory_plan,
        "mode": "networks" if args.networks_only else "pipeline",
        "backends": (bench_networks(backends, setup, args.warmup, args.iters) if args.networks_only
                     else bench(backends, setup, args.warmup, args.iters, steps)),
    }
    if len(backends) == 2:
        report["ratios"] = {f"{backends[1]}/{backends[0]}": ratios(report["backends"], *backends)}
    print_report(report)
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
