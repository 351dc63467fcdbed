"""Shared by the checkpoint tests and tests/fixtures/make_official_fixtures.py.

Weights are not stored in the fixtures: `seeded_state_dict` regenerates them from the
names and shapes (the official ones), so the generator and the tests see the same tensors.
"""
from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import torch
from torch import Tensor

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = FIXTURES / "official_keys_full.json.gz"


def seeded_tensor(key: str, shape: tuple[int, ...]) -> Tensor:
    """A deterministic tensor for one parameter name: fan-in scaled matrices, norm-like vectors."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    t = torch.randn(shape, generator=g)
    if len(shape) >= 2:
        fan_in = max(1, t[0].numel())
        return t / fan_in**0.5
    if key.endswith("weight") and ("norm" in key or "ln_" in key):
        return 1.0 + 0.1 * t
    return 0.1 * t


def seeded_state_dict(shapes: dict[str, list[int]]) -> dict[str, Tensor]:
    return {k: seeded_tensor(k, tuple(s)) for k, s in shapes.items()}


def read_manifest(path: Path = MANIFEST) -> dict[str, dict[str, list[int]]]:
    """{official file: {key: shape}}."""
    with gzip.open(path, "rt") as f:
        return json.load(f)
