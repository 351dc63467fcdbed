import pytest
import torch

from hi3d.engine.backends.torch_backend import load_modules, torch_networks
from hi3d.engine.config import tiny
from hi3d.engine.pipeline import Hi3DPipeline
from hi3d.export.build_engines import main as build_main


@pytest.fixture(scope="session")
def tiny_cfg():
    return tiny().with_steps(2)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_cfg):
    nets = torch_networks(load_modules(tiny_cfg), torch.device("cpu"), torch.float32)
    return Hi3DPipeline(tiny_cfg, nets)


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory):
    """Every tiny network exported and parity-checked once, by the CLI users run (export and
    serving tests share it)."""
    out = tmp_path_factory.mktemp("build")
    rc = build_main(["--preset", "tiny", "--out", str(out), "--onnx-only"])
    return out, rc
