"""export/build_engines.py: the tiny build end to end, caching, and bad input."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from hi3d.engine.config import NETWORK_NAMES
from hi3d.export.build_engines import main

REPO = Path(__file__).resolve().parents[2]


def test_tiny_build_writes_valid_onnx_that_passes_parity(tiny_build):
    out, rc = tiny_build
    assert rc == 0
    report = json.loads((out / "tiny" / "build_report.json").read_text())
    assert [m["model"] for m in report["models"]] == list(NETWORK_NAMES)
    assert report["engines_skipped"] is None  # --onnx-only: not attempted
    for m in report["models"]:
        path = Path(m["onnx"])
        onnx.checker.check_model(str(path), full_check=True)
        assert onnx.load(str(path)).opset_import[0].version >= 17
        sidecar = json.loads(path.with_name(path.name + ".json").read_text())
        assert all(r["ok"] for r in sidecar["parity"]["results"])
        assert {r["point"] for r in sidecar["parity"]["results"]} == {"min", "opt"}


def _copy(tiny_build, tmp_path) -> Path:
    """A private copy: a rerun rewrites build_report.json, which the test above reads."""
    return Path(shutil.copytree(tiny_build[0], tmp_path / "build"))


def test_rerun_finds_everything_cached(tiny_build, tmp_path, capsys):
    out = _copy(tiny_build, tmp_path)
    assert main(["--preset", "tiny", "--out", str(out), "--onnx-only", "--models", "clip,depth"]) == 0
    text = capsys.readouterr().out
    assert text.count("ONNX found cached") == 2 and "exporting" not in text


def test_without_tensorrt_engines_are_skipped_or_required(tiny_build, tmp_path, capsys):
    from hi3d.engine.backends.tensorrt_backend import unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are available here")
    out = _copy(tiny_build, tmp_path)
    assert main(["--preset", "tiny", "--out", str(out), "--models", "aesthetic"]) == 0
    assert f"TensorRT engines skipped: {unavailable_reason()}" in capsys.readouterr().out
    assert main(["--preset", "tiny", "--out", str(out), "--models", "aesthetic", "--engines"]) == 3
    assert "--engines given but engines cannot be built here" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--models", "unet1,unet9"], "unknown network name(s) ['unet9']"),
    (["--weights", "/nonexistent/ckpts"], "weights directory not found: /nonexistent/ckpts"),
])
def test_bad_input_is_named(tmp_path, capsys, args, message):
    assert main(["--preset", "tiny", "--out", str(tmp_path)] + args) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_runs_as_a_script_from_the_repo_root(tmp_path):
    proc = subprocess.run([sys.executable, "export/build_engines.py", "--out", str(tmp_path), "--models", "nope"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown network name(s) ['nope']" in proc.stderr
