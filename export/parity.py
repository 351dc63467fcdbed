"""ONNX Runtime vs torch on seeded inputs, with the worst element named on failure.

An element passes when |ort - torch| <= atol + rtol * |torch| (numpy.allclose's rule,
tolerances per network in specs.py). The report keeps, per output and per shape point,
the element that came closest to (or went furthest past) its bound.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hi3d.export.specs import ExportSpec


@dataclass(frozen=True)
class OutputParity:
    point: str  # which dim sizes: "min", "opt", ...
    output: str
    shape: tuple[int, ...]
    max_abs_err: float
    worst_index: tuple[int, ...]  # the element with the largest err / bound
    torch_value: float
    ort_value: float
    bound: float  # atol + rtol * |torch| at that element
    ok: bool

    def describe(self) -> str:
        return (
            f"{self.output}{list(self.shape)} at {self.point}: max |err| {self.max_abs_err:.3g}; worst element "
            f"{self.worst_index}: torch {self.torch_value:.6g} vs ort {self.ort_value:.6g} "
            f"(err {abs(self.torch_value - self.ort_value):.3g}, allowed {self.bound:.3g})"
        )


@dataclass(frozen=True)
class ParityReport:
    network: str
    atol: float
    rtol: float
    results: tuple[OutputParity, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def max_abs_err(self) -> float:
        return max(r.max_abs_err for r in self.results)

    def summary(self) -> str:
        return f"max |err| {self.max_abs_err:.3g} (atol {self.atol:g}, rtol {self.rtol:g}) over {len(self.results)} checks"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class ParityError(AssertionError):
    def __init__(self, report: ParityReport):
        self.report = report
        bad = [r.describe() for r in report.results if not r.ok]
        super().__init__(f"{report.network}: ONNX Runtime differs from torch beyond tolerance: " + "; ".join(bad))


def compare(point: str, name: str, ref: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> OutputParity:
    """Elementwise check of `got` against the reference `ref` (same shape)."""
    if ref.shape != got.shape:
        raise ValueError(f"{name} at {point}: ONNX Runtime shape {got.shape} != torch shape {ref.shape}")
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    err = np.abs(got64 - ref64)
    bound = atol + rtol * np.abs(ref64)
    # NaN anywhere is a failure, and the worst element.
    ratio = np.where(np.isfinite(err), err / bound, np.inf)
    flat = int(np.argmax(ratio))
    idx = tuple(int(i) for i in np.unravel_index(flat, ref.shape))
    return OutputParity(
        point=point,
        output=name,
        shape=tuple(ref.shape),
        max_abs_err=float(np.nanmax(err)) if np.isfinite(err).all() else float("inf"),
        worst_index=idx,
        torch_value=float(ref64[idx]),
        ort_value=float(got64[idx]),
        bound=float(bound[idx]),
        ok=bool(np.isfinite(ratio).all() and ratio.max() <= 1.0),
    )


@dataclass(frozen=True)
class Reference:
    """Seeded inputs at one dim point and what torch returned for them (CPU numpy)."""

    point: str
    inputs: tuple[np.ndarray, ...]
    outputs: tuple[np.ndarray, ...]


def torch_reference(spec: ExportSpec, module: nn.Module, points: tuple[str, ...] = ("min", "opt"),
                    seed: int = 1) -> tuple[Reference, ...]:
    """Run torch (on the module's device, fp32) on seeded inputs at each point's parity
    sizes. Kept apart from the ONNX Runtime side so that the module can be freed before a
    session holds a second copy of the weights."""
    device = next(module.parameters()).device
    refs = []
    for i, point in enumerate(points):
        inputs = spec.sample_inputs(spec.parity_sizes(point), seed=seed + i)
        with torch.inference_mode():
            out = module.eval()(*(x.to(device) for x in inputs))
        outs = out if isinstance(out, tuple) else (out,)
        refs.append(Reference(point, tuple(x.numpy() for x in inputs), tuple(o.float().cpu().numpy() for o in outs)))
    return tuple(refs)


def compare_with_onnx(spec: ExportSpec, refs: tuple[Reference, ...], onnx_path: Path) -> ParityReport:
    """ONNX Runtime (CPU) on the references' inputs; raise ParityError naming the worst
    element if any output is beyond the spec's tolerance."""
    from hi3d.engine.backends.onnxruntime_backend import make_session

    session = make_session(onnx_path, torch.device("cpu"))
    results = []
    for ref in refs:
        feed = {t.name: x for t, x in zip(spec.inputs, ref.inputs)}
        got = session.run([t.name for t in spec.outputs], feed)
        for t, r, g in zip(spec.outputs, ref.outputs, got):
            results.append(compare(ref.point, t.name, r, g, spec.atol, spec.rtol))
    report = ParityReport(spec.network, spec.atol, spec.rtol, tuple(results))
    if not report.ok:
        raise ParityError(report)
    return report


def check_parity(
    spec: ExportSpec, module: nn.Module, onnx_path: Path, points: tuple[str, ...] = ("min", "opt"), seed: int = 1
) -> ParityReport:
    """torch vs ONNX Runtime on the same seeded inputs at each dim point (see above)."""
    return compare_with_onnx(spec, torch_reference(spec, module, points, seed), onnx_path)
