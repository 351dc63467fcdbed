"""FLOPs and bytes of one UNet step (and one VAE decode), counted from the graph.

How it counts: the network is built and run under `FakeTensorMode` (tensors carry shapes
and dtypes but no storage, so the full 1.5 B-parameter UNet costs no memory and about ten
seconds), inside `torch.utils.flop_counter.FlopCounterMode` (matmul, conv and attention
formulas) and a dispatch mode of our own that adds up the elements every non-view aten op
reads and writes. The meta device does not work (diffusers' AlphaBlender mixes in a CPU
tensor); fake tensors do. On CPU, attention dispatches to
`_scaled_dot_product_flash_attention_for_cpu`, which FlopCounterMode has no formula for:
we map it to torch's own SDPA formula. tests/bench/test_cost_model.py checks the total
against an independent per-module count (conv / linear / attention shapes via hooks).

Bytes are given two ways: the weights alone (each read once per step: the floor for any
implementation) and the unfused traffic (every op's inputs + outputs, what eager PyTorch
moves: a ceiling that fusion lowers). The lower bound on time is
max(FLOPs / peak FLOP/s, weight bytes / HBM bandwidth).

    python -m hi3d.bench.cost_model [--preset full] [--latency results/latency.json] [--out results/cost.json]
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from hi3d.bench.common import format_table, read_json
from hi3d.engine.config import Hi3DConfig, UNetConfig, preset
from hi3d.engine.files import atomic_write_json
from hi3d.engine.models.unet import Hi3DUNet
from hi3d.engine.models.vae import VAEDecoder

aten = torch.ops.aten


@dataclass(frozen=True)
class Hardware:
    name: str
    fp16_flops: float  # dense tensor-core FLOP/s (no 2:4 sparsity)
    fp8_flops: float
    hbm_bytes_per_s: float
    source: str


# NVIDIA H100 Tensor Core GPU datasheet, SXM5 column: FP16/BF16 tensor 1,979 TFLOPS and
# FP8 3,958 TFLOPS are quoted *with sparsity*; dense is half. GPU memory bandwidth 3.35 TB/s.
H100_SXM = Hardware(
    name="H100 SXM5",
    fp16_flops=989.4e12,
    fp8_flops=1978.9e12,
    hbm_bytes_per_s=3.35e12,
    source="NVIDIA H100 Tensor Core GPU datasheet (SXM5; dense = half the quoted with-sparsity figures)",
)


@dataclass(frozen=True)
class Cost:
    """One network at one input shape, called `calls` times per generation."""

    name: str  # the bench/latency.py component this cost is compared with
    shape: str  # the input shape of one call, in words
    params: int
    flops: int  # per call
    flops_by_op: dict[str, int] = field(default_factory=dict)
    weight_bytes: int = 0  # params x bytes_per_element (read once per call)
    traffic_bytes: int = 0  # sum over non-view ops of (inputs + outputs) x bytes_per_element
    bytes_per_element: int = 2
    calls: int = 1

    def bounds(self, hw: Hardware) -> dict[str, float]:
        """Seconds for all `calls`: compute-bound at fp16 and fp8, weight reads, unfused traffic."""
        n = self.calls
        fp16, fp8 = n * self.flops / hw.fp16_flops, n * self.flops / hw.fp8_flops
        weights = n * self.weight_bytes / hw.hbm_bytes_per_s
        return {
            "fp16_compute_s": fp16,
            "fp8_compute_s": fp8,
            "weight_read_s": weights,
            "unfused_traffic_s": n * self.traffic_bytes / hw.hbm_bytes_per_s,
            "lower_bound_fp16_s": max(fp16, weights),
            "lower_bound_fp8_s": max(fp8, weights / 2),  # fp8 weights are half the bytes
        }


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


class TrafficCounter(TorchDispatchMode):
    """Elements read and written by every aten op that is not a view (eager, unfused)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # prim ops (device, layout queries) move no data; views alias their input.
        if func.namespace == "aten" and not func.is_view and func is not aten.detach.default:
            self.elements += sum(t.numel() for t in tree_leaves((args, kwargs, out)) if isinstance(t, Tensor))
        return out


def count_forward(
    module: nn.Module, inputs: dict[str, Tensor], name: str, shape: str, bytes_per_element: int = 2
) -> Cost:
    """Run `module(**inputs)` once under the counters (call it inside a FakeTensorMode)."""
    flops = FlopCounterMode(
        display=False, custom_mapping={aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    )
    traffic = TrafficCounter()
    with torch.no_grad(), flops, traffic:
        module(**inputs)
    params = sum(p.numel() for p in module.parameters())
    return Cost(
        name=name,
        shape=shape,
        params=params,
        flops=int(flops.get_total_flops()),
        flops_by_op={str(k): int(v) for k, v in flops.get_flop_counts()["Global"].items()},
        weight_bytes=params * bytes_per_element,
        traffic_bytes=traffic.elements * bytes_per_element,
        bytes_per_element=bytes_per_element,
    )


def fake_unet(cfg: UNetConfig, num_frames: int) -> tuple[FakeTensorMode, nn.Module]:
    """A UNet whose parameters are fake tensors; use it inside the returned mode."""
    mode = FakeTensorMode()
    with mode:
        return mode, Hi3DUNet(cfg, num_frames).eval()


def unet_step_cost(cfg: UNetConfig, num_frames: int, latent: int, batch: int = 2, name: str = "unet") -> Cost:
    """One UNet call on the CFG batch: sample [batch, F, C, latent, latent]."""
    mode, unet = fake_unet(cfg, num_frames)
    with mode:
        inputs = unet.sample_inputs(batch, latent)
        shape = f"[{batch}, {num_frames}, {cfg.in_channels}, {latent}, {latent}]"
        return count_forward(unet, inputs, name, shape)


def vae_decode_cost(cfg: Hi3DConfig, frames: int, latent: int, calls: int, name: str) -> Cost:
    with FakeTensorMode():
        dec = VAEDecoder(cfg.vae).eval()
        z = torch.zeros(frames, cfg.vae.latent_channels, latent, latent)
        cost = count_forward(dec, {"latent": z}, name, f"[{frames}, 4, {latent}, {latent}]")
    return replace(cost, calls=calls)


def pipeline_costs(cfg: Hi3DConfig) -> list[Cost]:
    """Per-call costs of the networks that dominate generation, at the preset's sizes."""
    f, lat1, lat2 = cfg.num_frames, cfg.stage1.resolution // cfg.latent_factor, cfg.stage2.resolution // cfg.latent_factor
    return [
        unet_step_cost(cfg.stage1.unet, f, lat1, name="stage1.unet_step"),
        unet_step_cost(cfg.stage2.unet, f, lat2, name="stage2.unet_step"),
        vae_decode_cost(cfg, f, lat1, 1, "stage1.decode"),  # all frames in one call, as upstream
        vae_decode_cost(cfg, 1, lat2, f, "stage2.decode"),  # one frame per call, as upstream
    ]


def load_costs(path: str, preset_name: str) -> list[Cost]:
    data = read_json(path)
    if data.get("preset") != preset_name:
        raise SystemExit(f"--costs {path} counted preset {data.get('preset')!r}, not {preset_name!r}")
    names = {f.name for f in fields(Cost)}
    return [Cost(**{k: v for k, v in rec.items() if k in names}) for rec in data["costs"]]


def measured_medians(latency: dict[str, Any], component: str) -> dict[str, float]:
    """{backend: median ms} of one component in a bench/latency.py JSON."""
    out = {}
    for backend, res in latency.get("backends", {}).items():
        comp = res.get("components", {}).get(component)
        if comp:
            out[backend] = comp["median_ms"]
    return out


def report(costs: list[Cost], hw: Hardware, latency: dict[str, Any] | None) -> tuple[str, list[dict[str, Any]]]:
    """The table (bounds beside measured medians per backend) and the JSON records."""
    rows, records = [], []
    for c in costs:
        b = c.bounds(hw)
        measured = measured_medians(latency, c.name) if latency else {}
        bound_ms = 1e3 * b["lower_bound_fp16_s"]
        for backend, ms in measured.items() or [(None, None)]:
            rows.append([
                c.name, f"{c.calls} x {c.shape}", c.flops * c.calls / 1e12, c.calls * c.weight_bytes / 1e9,
                c.calls * c.traffic_bytes / 1e9, bound_ms, 1e3 * b["lower_bound_fp8_s"], backend, ms,
                None if ms is None else ms / bound_ms,
                None if ms is None else c.calls * c.flops / (ms / 1e3) / 1e12,
            ])
        records.append({**asdict(c), "bounds_s": b, "measured_median_ms": measured})
    headers = ["component", "calls x input", "TFLOP", "weights GB", "unfused GB", "bound fp16 ms",
               "bound fp8 ms", "backend", "measured ms", "measured/bound", "achieved TFLOP/s"]
    return format_table(headers, rows), records


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="full", choices=["full", "tiny"])
    ap.add_argument("--latency", help="a bench/latency.py JSON whose medians to print beside the bounds")
    ap.add_argument("--costs", help="a JSON this script wrote: reuse its counts instead of counting again")
    ap.add_argument("--out", help="write the counts and bounds here as JSON")
    args = ap.parse_args(argv)
    cfg = preset(args.preset)
    try:
        latency = read_json(args.latency) if args.latency else None
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--latency: {e}") from e
    if latency is not None and latency.get("preset") != cfg.name:
        raise SystemExit(f"--latency {args.latency} measured preset {latency.get('preset')!r}, "
                         f"not {cfg.name!r}: the bounds would not be comparable")
    costs = load_costs(args.costs, cfg.name) if args.costs else pipeline_costs(cfg)
    table, records = report(costs, H100_SXM, latency)
    unet = costs[0]
    print(f"UNet parameters: {unet.params:,} (stage 1), {costs[1].params:,} (stage 2)")
    print(f"Hardware: {H100_SXM.name}: {H100_SXM.fp16_flops / 1e12:.1f} TFLOP/s fp16 dense, "
          f"{H100_SXM.fp8_flops / 1e12:.1f} fp8 dense, {H100_SXM.hbm_bytes_per_s / 1e12:.2f} TB/s HBM3 "
          f"({H100_SXM.source})")
    print("Bytes at fp16 (2 per element). Bound = max(FLOPs / peak, weight bytes / bandwidth).")
    if latency is not None:
        print(f"Measured on: {latency.get('machine', {}).get('device')} "
              f"{latency.get('machine', {}).get('gpu', latency.get('machine', {}).get('cpu', ''))}, "
              f"preset {latency.get('preset')}, dtype {latency.get('dtype')}")
    print(table)
    if args.out:
        atomic_write_json(args.out, {"preset": cfg.name, "hardware": asdict(H100_SXM), "costs": records})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
