"""Export one network to ONNX, clean the graph up, check it, cache it under its key.

We use the TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`) with
`dynamic_axes`: on torch 2.13 it exports every Hi3D network (diffusers' video UNet and
VAE, transformers' CLIP and DPT with their default SDPA attention) in seconds, and ONNX
Runtime matches torch to ~1e-6 on all of them except the tiny stage-1 UNet (see
specs.py). The dynamo exporter also works on the UNet but is ~6x slower to export.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from hi3d.engine.config import NETWORK_NAMES, Hi3DConfig
from hi3d.export import artifacts
from hi3d.export.parity import ParityReport, check_parity
from hi3d.export.specs import OPSET, ExportSpec, network_config

PROTOBUF_LIMIT = 2**31 - 1  # one protobuf message; bigger models keep weights outside


@dataclass(frozen=True)
class OnnxArtifact:
    path: Path
    status: str  # "found cached" or "built (<why>)"
    size_bytes: int  # graph plus external data
    parity: ParityReport | None  # None when found cached (its report is in the sidecar)


def weights_fingerprint(weights: Path | None, cfg: Hi3DConfig) -> str:
    """Identity of the weights without reading them: file names, sizes, mtimes."""
    if weights is None:
        # Random weights are one seeded draw over all networks in turn (engine.models):
        # any network's configuration changes every later network's weights.
        parts = [network_config(cfg, n) for n in NETWORK_NAMES]
        return f"random(seed={cfg.seed_weights}, networks={artifacts.key_hash({'parts': parts})[:16]})"
    files = sorted(p for p in Path(weights).rglob("*") if p.is_file())
    listing = [(str(p.relative_to(weights)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return artifacts.key_hash({"dir": str(Path(weights).resolve()), "files": listing})


def export_key(spec: ExportSpec, config_repr: str, weights_id: str) -> dict:
    import diffusers
    import transformers

    return {
        "network": spec.network,
        "spec": spec.fingerprint(),
        "config": artifacts.key_hash({"config": config_repr}),
        "weights": weights_id,
        "opset": OPSET,
        "exporter": "torch.onnx.export(dynamo=False)",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


# ---- clean-up passes: each takes and returns an onnx-graphsurgeon Graph --------------


def fold_constants(graph):
    """Evaluate constant subgraphs (shape arithmetic the tracer left behind) once, here."""
    return graph.fold_constants(error_ok=False)


def drop_unused(graph):
    """Remove nodes and initializers no output depends on (folding leaves many)."""
    return graph.cleanup(remove_unused_graph_inputs=False)


def sort_nodes(graph):
    return graph.toposort()


PASSES = (("fold_constants", fold_constants), ("drop_unused", drop_unused), ("sort_nodes", sort_nodes))


def run_passes(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    for _, apply in PASSES:
        graph = apply(graph)
    return gs.export_onnx(graph)


# ---- export ---------------------------------------------------------------------------


def _weights_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) or t.ByteSize() for t in model.graph.initializer)


def _save(model: onnx.ModelProto, path: Path) -> list[Path]:
    """Write the graph (and its weights in one side file when over 2 GB); return the files."""
    if _weights_bytes(model) < PROTOBUF_LIMIT - (64 << 20):
        onnx.save(model, str(path))
        return [path]
    data = path.with_name(path.name + ".data")
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
    return [path, data]


def export_onnx(spec: ExportSpec, module: nn.Module, path: Path) -> list[Path]:
    """Trace `module` at the spec's export sizes, run the passes, check, write `path`.

    The files appear at `path` only once they passed onnx.checker and shape inference.
    Returns the written files (the graph, and `<path>.data` for models over 2 GB).
    """
    device = next(module.parameters()).device
    inputs = tuple(x.to(device) for x in spec.sample_inputs(spec.sizes("export")))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{spec.network}.") as tmp:
        raw = Path(tmp) / "raw" / "model.onnx"
        raw.parent.mkdir()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
            torch.onnx.export(
                module.eval(),
                inputs,
                str(raw),
                dynamo=False,
                opset_version=OPSET,
                input_names=[t.name for t in spec.inputs],
                output_names=[t.name for t in spec.outputs],
                dynamic_axes=spec.dynamic_axes(),
                do_constant_folding=True,
            )
        model = onnx.load(str(raw))  # pulls in any external data the exporter wrote
        model = run_passes(model)
        out = Path(tmp) / "out" / path.name
        out.parent.mkdir()
        files = _save(model, out)
        del model
        check_onnx(out, spec)
        stale = path.with_name(path.name + ".data")
        if stale not in [path.with_name(f.name) for f in files]:
            stale.unlink(missing_ok=True)  # external data of an earlier, bigger export
        final = []
        for f in files:
            target = path.with_name(f.name)
            shutil.move(str(f), target)  # same filesystem: an atomic rename
            final.append(target)
    return final


def check_onnx(path: Path, spec: ExportSpec) -> None:
    """onnx.checker + strict shape inference, and the graph's I/O names match the spec."""
    onnx.checker.check_model(str(path), full_check=False)
    inferred = path.with_name(path.name + ".inferred")
    try:
        # The path form works for models over 2 GB; strict mode raises on any conflict.
        onnx.shape_inference.infer_shapes_path(str(path), str(inferred), strict_mode=True, data_prop=True)
        inferred.replace(path)
    finally:
        inferred.unlink(missing_ok=True)
    graph = onnx.load(str(path), load_external_data=False).graph
    got_in = [i.name for i in graph.input]
    got_out = [o.name for o in graph.output]
    want_in = [t.name for t in spec.inputs]
    want_out = [t.name for t in spec.outputs]
    if got_in != want_in or got_out != want_out:
        raise ValueError(f"{path}: I/O {got_in} -> {got_out} differ from the spec's {want_in} -> {want_out}")


def onnx_size(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def ensure_onnx(
    spec: ExportSpec,
    key: dict,
    path: Path,
    get_module: Callable[[], nn.Module],
    parity_points: tuple[str, ...] = ("min", "opt"),
    log: Callable[[str], None] = print,
) -> OnnxArtifact:
    """The ONNX file for `key` at `path`: reused when its sidecar vouches for it, else
    exported, checked and parity-tested against the torch module (a ParityError leaves
    no sidecar, so the file is never used)."""
    verdict = artifacts.verify(path, key)
    if verdict.ok:
        log(f"[{spec.network}] ONNX found cached: {path}")
        return OnnxArtifact(path, "found cached", onnx_size(path), None)
    if path.exists() or artifacts.sidecar_path(path).exists():
        log(f"[{spec.network}] cached ONNX not used: {verdict.reason}; re-exporting")
    artifacts.invalidate(path)
    log(f"[{spec.network}] exporting ONNX (opset {OPSET}) -> {path}")
    module = get_module()
    files = export_onnx(spec, module, path)
    report = check_parity(spec, module, path, parity_points)
    log(f"[{spec.network}] parity ok: {report.summary()}")
    artifacts.write_sidecar(path, key, files, extra={"parity": json.loads(report.to_json())})
    return OnnxArtifact(path, f"built ({verdict.reason})", onnx_size(path), report)
