"""The package's structure: imports point down the layers only, and the backend registry
is the one place a backend is chosen (adding one is one entry, seen by every entry point);
the served stubs that run no network do not load the model libraries."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# kernels <- engine <- export <- serving <- CLI / bench: a module may import its own layer and below.
LAYERS = {"kernels": 0, "engine": 1, "export": 2, "serving": 3, "cli": 4, "serve_cli": 4, "bench": 4}


def _layer_of_module(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "hi3d" and len(parts) > 1 and parts[1] in LAYERS else None


def _source_files():
    for folder in ("kernels", "engine", "export", "serving", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            yield folder, path
    for path in (ROOT / "hi3d").glob("*.py"):
        if path.stem in LAYERS:
            yield path.stem, path


def test_imports_point_down_the_layers_only():
    upward = []
    for layer, path in _source_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                target = _layer_of_module(name)
                if target is not None and LAYERS[target] > LAYERS[layer]:
                    upward.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert upward == []


def test_nothing_outside_the_namespace_is_imported():
    stray = []
    for _, path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] in ("engine", "export", "kernels", "serving", "bench"):
                    stray.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module}")
    assert stray == []


def test_a_new_backend_is_one_registry_entry(monkeypatch, tmp_path):
    """Register a backend (torch runners that count their calls) and run `hi3d generate` on it."""
    from PIL import Image

    from hi3d.cli import main
    from hi3d.export import backends

    calls = []

    def build(request: backends.NetworkRequest):
        nets = backends.BACKENDS["torch"].build(request)
        counted = {name: (lambda r, n: lambda *x: (calls.append(n), r(*x))[1])(r, name)
                   for name, r in nets.runners().items()}
        return type(nets)(**counted, device=nets.device, dtype=nets.dtype)

    monkeypatch.setitem(backends.BACKENDS, "counting", backends.Backend("counting", "torch, counted", "python", build))
    Image.new("RGB", (32, 32), (200, 40, 40)).save(tmp_path / "in.png")
    assert main(["generate", str(tmp_path / "in.png"), "--out", str(tmp_path / "out"), "--backend", "counting",
                 "--steps", "1", "--device", "cpu"]) == 0
    assert {"clip", "unet1", "unet2", "vae_decoder", "depth"} <= set(calls)
    assert len(list((tmp_path / "out" / "stage2").glob("[0-9]*.png"))) == 16


def test_only_the_network_stubs_import_the_model_libraries():
    # Every served model is a stub process that imports its module at start-up; diffusers and
    # transformers cost ~5 s of CPU each time, so only the stubs that build a network load them.
    code = ("import sys; import hi3d.engine.pipeline, hi3d.engine.recon, hi3d.engine.images, hi3d.serving.meshing; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]"
