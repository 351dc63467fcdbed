"""What keeps a full export within host memory, checked at tiny size: the torch module is
gone before ONNX Runtime loads the weights, and the over-2 GB path (weights streamed into
one `.onnx.data` file; a forced threshold stands in for 2 GB) reads back right and has
its truncation caught. The figures themselves: python -m hi3d.bench.export_memory."""
import gc
import weakref
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from hi3d.engine.config import tiny
from hi3d.engine.models import build_seeded
from hi3d.export import artifacts, onnx_export
from hi3d.export.onnx_export import ensure_onnx, export_key, finish_onnx, trace_onnx
from hi3d.export.parity import check_parity
from hi3d.export.specs import export_specs, network_config

NAME = "clip"  # the cheapest tiny network with weights over 1 KiB


def _weights(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))  # pulls in external data
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_per_tensor_files_are_streamed_into_one_data_file(tmp_path):
    cfg = tiny()
    spec, module = export_specs(cfg)[NAME], build_seeded(cfg, NAME, cfg.seed_weights)
    raw = tmp_path / "work" / "raw" / "model.onnx"
    raw.parent.mkdir(parents=True)
    trace_onnx(spec, module, raw)
    inline = tmp_path / "inline" / "model.onnx"  # the same graph through the in-memory path
    inline.parent.mkdir()
    finish_onnx(raw, spec, inline)
    # What the legacy exporter writes over 2 GB: one file per weight beside the graph.
    onnx.save(onnx.load(str(raw)), str(raw), save_as_external_data=True, all_tensors_to_one_file=False,
              size_threshold=0)
    assert len(list(raw.parent.iterdir())) > 10
    path = tmp_path / "onnx" / f"{NAME}.onnx"
    path.parent.mkdir()
    files = finish_onnx(raw, spec, path, external_data_threshold=0)
    data = path.with_name(path.name + ".data")
    assert files == [path, data] and sorted(p.name for p in path.parent.iterdir()) == [path.name, data.name]
    skeleton = onnx.load(str(path), load_external_data=False)
    external = [t for t in skeleton.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and all({e.key: e.value for e in t.external_data}["location"] == data.name for t in external)
    assert path.stat().st_size < 64 << 10  # the graph alone
    # The same weights as the inline export, and the same answers as torch.
    want, got = _weights(inline), _weights(path)
    assert sorted(want) == sorted(got)
    assert all(np.array_equal(want[k], got[k]) for k in want)
    assert check_parity(spec, module, path).ok


def test_truncated_data_file_is_detected_and_rebuilt(tmp_path, capsys):
    cfg = tiny()
    spec = export_specs(cfg)[NAME]
    key = export_key(spec, network_config(cfg, NAME), "test: seeded")
    built = []

    def module():
        built.append(NAME)
        return build_seeded(cfg, NAME, cfg.seed_weights)

    path = tmp_path / f"{NAME}.onnx"
    first = ensure_onnx(spec, key, path, module, external_data_threshold=0)
    data = path.with_name(path.name + ".data")
    assert first.status.startswith("built") and data.stat().st_size > 0
    assert set(artifacts.read_sidecar(path)["files"]) == {path.name, data.name}
    again = ensure_onnx(spec, key, path, module, external_data_threshold=0)
    assert again.status == "found cached" and built == [NAME]
    data.write_bytes(data.read_bytes()[:-100])
    capsys.readouterr()
    redone = ensure_onnx(spec, key, path, module, external_data_threshold=0)
    assert f"file {data.name} is corrupt" in capsys.readouterr().out
    assert redone.status.startswith("built") and built == [NAME, NAME]
    assert artifacts.verify(path, key).ok and redone.parity.ok


def test_the_module_is_freed_before_onnx_runtime_loads_the_weights(tmp_path, monkeypatch):
    cfg = tiny()
    spec = export_specs(cfg)[NAME]
    held = []

    def module():
        m = build_seeded(cfg, NAME, cfg.seed_weights)
        held.append(weakref.ref(m))
        return m

    seen = []
    compare = onnx_export.compare_with_onnx

    def compare_after_checking(*args):
        gc.collect()
        seen.append(held[0]() is None)
        return compare(*args)

    monkeypatch.setattr(onnx_export, "compare_with_onnx", compare_after_checking)
    key = export_key(spec, network_config(cfg, NAME), "test: seeded")
    a = ensure_onnx(spec, key, tmp_path / f"{NAME}.onnx", module)
    assert seen == [True] and a.parity.ok
