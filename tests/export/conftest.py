import pytest

from hi3d.export.build_engines import main as build_main


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory):
    """Every tiny network exported and parity-checked once, by the CLI users run."""
    out = tmp_path_factory.mktemp("build")
    rc = build_main(["--preset", "tiny", "--out", str(out), "--onnx-only"])
    return out, rc
