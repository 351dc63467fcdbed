"""Export one network to ONNX, clean the graph up, check it, cache it under its key.

We use the TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`) with
`dynamic_axes`: on torch 2.13 it exports every Hi3D network (diffusers' video UNet and
VAE, transformers' CLIP and DPT with their default SDPA attention) in seconds, and ONNX
Runtime matches torch to ~1e-6 on all of them except the tiny stage-1 UNet (see
specs.py). The dynamo exporter also works on the UNet but is ~6x slower to export.
"""
from __future__ import annotations

import gc
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

from hi3d.engine.config import Hi3DConfig
from hi3d.export import artifacts
from hi3d.export.parity import ParityReport, compare_with_onnx, torch_reference
from hi3d.export.specs import OPSET, ExportSpec

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
        # Each network's random weights come from its own seed (engine.models.network_seed)
        # and its own configuration, which the key holds apart from this.
        return f"random(seed={cfg.seed_weights}, per network)"
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

# Constants at or above this size are never evaluated or produced by folding: torch's own
# constant folding already ran on the weights, what graphsurgeon adds is shape arithmetic
# and small tensors, and evaluating a node over a weight would pull it into memory.
FOLD_LIMIT = 1 << 20


def _nbytes(tensor) -> int:
    return tensor._values.nbytes  # LazyValues or ndarray; .values would load lazy ones


def fold_constants(graph):
    """Evaluate constant subgraphs (shape arithmetic the tracer left behind) once, here."""
    import onnx_graphsurgeon as gs

    def over_weights(node) -> bool:
        return any(isinstance(t, gs.Constant) and _nbytes(t) >= FOLD_LIMIT for t in node.inputs)

    return graph.fold_constants(error_ok=False, size_threshold=FOLD_LIMIT, should_exclude_node=over_weights)


def drop_unused(graph):
    """Remove nodes and initializers no output depends on (folding leaves many)."""
    return graph.cleanup(remove_unused_graph_inputs=False)


def sort_nodes(graph):
    return graph.toposort()


PASSES = (("fold_constants", fold_constants), ("drop_unused", drop_unused), ("sort_nodes", sort_nodes))


def run_passes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The passes over `model`; weights it keeps as external data stay on disk (never
    loaded), and the result refers to the same files."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    for _, apply in PASSES:
        graph = apply(graph)
    return gs.export_onnx(graph)


# ---- export ---------------------------------------------------------------------------

# Weights above this total go to `<file>.onnx.data`: one protobuf message cannot exceed 2 GB.
EXTERNAL_DATA_THRESHOLD = PROTOBUF_LIMIT - (64 << 20)
_ALIGN = 1 << 16  # offsets of big tensors in .data: page-aligned lets ONNX Runtime map them
_CHUNK = 1 << 24


def _tensor_bytes(t: onnx.TensorProto) -> int:
    count = 1
    for d in t.dims:
        count *= d
    return count * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


def _external_info(t: onnx.TensorProto) -> dict[str, str] | None:
    if t.data_location != onnx.TensorProto.EXTERNAL:
        return None
    return {e.key: e.value for e in t.external_data}


def _load_skeleton(raw: Path) -> onnx.ModelProto:
    """The graph at `raw` with its big weights left in their files beside it (the legacy
    exporter writes one file per tensor over 2 GB); small ones are pulled in, so that the
    folding pass can evaluate them."""
    from onnx.external_data_helper import load_external_data_for_tensor

    model = onnx.load(str(raw), load_external_data=False)
    for t in model.graph.initializer:
        if _external_info(t) is not None and _tensor_bytes(t) < FOLD_LIMIT:
            load_external_data_for_tensor(t, str(raw.parent))
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]
    return model


def _copy_range(src: Path, offset: int, length: int | None, dst) -> None:
    with open(src, "rb") as f:
        f.seek(offset)
        left = length if length is not None else src.stat().st_size - offset
        while left:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise ValueError(f"{src}: external data ends {left} bytes early")
            dst.write(chunk)
            left -= len(chunk)


def _save(model: onnx.ModelProto, src_dir: Path, path: Path, threshold: int = EXTERNAL_DATA_THRESHOLD) -> list[Path]:
    """Write the graph; when its weights reach `threshold` bytes, every tensor of 1 KiB or
    more goes to one `<path>.data` file, streamed from the files under `src_dir` it refers
    to (so the weights never sit in memory). Returns the files written."""
    if sum(_tensor_bytes(t) for t in model.graph.initializer) < threshold:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(src_dir))  # under 2 GB: fits in the message
        onnx.save(model, str(path))
        return [path]
    data = path.with_name(path.name + ".data")
    with open(data, "wb") as out:
        for t in model.graph.initializer:
            info = _external_info(t)
            if info is None and len(t.raw_data) < 1024:
                continue  # tiny tensors stay in the graph, as onnx.save would keep them
            if _tensor_bytes(t) >= FOLD_LIMIT and out.tell() % _ALIGN:
                out.write(b"\0" * (_ALIGN - out.tell() % _ALIGN))
            offset = out.tell()
            if info is None:
                out.write(t.raw_data)
                t.ClearField("raw_data")
            else:
                length = info.get("length")
                _copy_range(src_dir / info["location"], int(info.get("offset", 0)),
                            None if length is None else int(length), out)
            del t.external_data[:]
            for k, v in (("location", data.name), ("offset", str(offset)), ("length", str(out.tell() - offset))):
                t.external_data.add(key=k, value=v)
            t.data_location = onnx.TensorProto.EXTERNAL
    onnx.save(model, str(path))
    return [path, data]


def trace_onnx(spec: ExportSpec, module: nn.Module, raw: Path) -> None:
    """torch.onnx.export at the spec's export sizes into `raw` (a fresh folder's file: a
    model over 2 GB comes with one file per weight beside it)."""
    device = next(module.parameters()).device
    inputs = tuple(x.to(device) for x in spec.sample_inputs(spec.sizes("export")))
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


def finish_onnx(raw: Path, spec: ExportSpec, path: Path, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> list[Path]:
    """Run the passes over the traced graph at `raw`, write it, check it, move it to `path`.

    The files appear at `path` only once they passed onnx.checker and shape inference.
    Returns the written files (the graph, and `<path>.data` past the threshold).
    """
    model = run_passes(_load_skeleton(raw))
    # Beside the traced graph's folder, which callers keep on `path`'s filesystem: the moves are renames.
    out = Path(tempfile.mkdtemp(dir=raw.parent.parent, prefix="out.")) / path.name
    files = _save(model, raw.parent, out, external_data_threshold)
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
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> OnnxArtifact:
    """The ONNX file for `key` at `path`: reused when its sidecar vouches for it, else
    exported, checked and parity-tested against the torch module (a ParityError leaves
    no sidecar, so the file is never used). `get_module` should build a fresh module:
    the export drops its reference after tracing, which frees it only if no one else
    holds it."""
    verdict = artifacts.verify(path, key)
    if verdict.ok:
        log(f"[{spec.network}] ONNX found cached: {path}")
        return OnnxArtifact(path, "found cached", onnx_size(path), None)
    if path.exists() or artifacts.sidecar_path(path).exists():
        log(f"[{spec.network}] cached ONNX not used: {verdict.reason}; re-exporting")
    artifacts.invalidate(path)
    log(f"[{spec.network}] exporting ONNX (opset {OPSET}) -> {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    module = get_module()
    # Memory: torch's outputs are taken first (small shapes), the module is freed once
    # traced, the passes and the writing never load the big weights, and ONNX Runtime
    # loads them only after all that. The peak is the trace: the module plus the
    # exporter's folded copies (~1.45x the weights on a full UNet, docs/export.md).
    refs = torch_reference(spec, module, parity_points)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{spec.network}.") as tmp:
        raw = Path(tmp) / "raw" / "model.onnx"
        raw.parent.mkdir()
        trace_onnx(spec, module, raw)
        del module
        gc.collect()  # module graphs hold reference cycles (hooks, parents)
        files = finish_onnx(raw, spec, path, external_data_threshold)
    report = compare_with_onnx(spec, refs, path)
    log(f"[{spec.network}] parity ok: {report.summary()}")
    artifacts.write_sidecar(path, key, files, extra={"parity": json.loads(report.to_json())})
    return OnnxArtifact(path, f"built ({verdict.reason})", onnx_size(path), report)
