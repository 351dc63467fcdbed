import os

import torch

# Triton decides at @triton.jit time whether a function (its own tl.* helpers included) is
# interpreted, so without a GPU the switch must be on before anything imports triton: the
# engine imports below do (through diffusers). torch itself does not. A GPU machine runs
# the compiled kernels; tests that need compiled Triton without a GPU (the sm_90 builds)
# run it in a subprocess of their own (tests/kernels/sm90_compile.py).
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from hi3d.engine.backends.torch_backend import load_modules, torch_networks  # noqa: E402
from hi3d.engine.config import tiny  # noqa: E402
from hi3d.engine.pipeline import Hi3DPipeline  # noqa: E402
from hi3d.export.build_engines import main as build_main  # noqa: E402


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Every test ends with torch's thread count as it began: the CLI's entry points set it
    for their process, and tests call them in-process. A thread count left behind changes
    the float reduction order of everything after it (the tiny stage-2 views by up to 2 uint8
    levels on ~7 % of values between 1 and 2 threads), so a later test's in-process reference
    would no longer match a served model, whose stub runs at the process default."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """Torch on one intra-op thread for the test: on a shared 2-core machine, intra-op threads
    mostly wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
