import os

import pytest
import torch


@pytest.fixture(scope="session")
def triton_device() -> torch.device:
    """Where the Triton kernels run: the CPU under the interpreter (tests/conftest.py turns it
    on without a GPU), else the GPU, compiled."""
    return torch.device("cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda")
