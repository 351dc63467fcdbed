import pytest
import torch

from export.build_engines import main as build_main


@pytest.fixture(scope="session")
def one_thread():
    """Two oversubscribed torch threads on a shared 2-core runner are ~50x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory, one_thread):
    """Every tiny network exported and parity-checked once, by the CLI users run."""
    out = tmp_path_factory.mktemp("build")
    rc = build_main(["--preset", "tiny", "--out", str(out), "--onnx-only"])
    return out, rc
