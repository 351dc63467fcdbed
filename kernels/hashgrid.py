"""Multiresolution hash-grid encoding (instant-NGP) as a torch module.

``HashGrid(cfg, impl)`` owns the table and dispatches to one implementation:

- ``"torch"``: ``kernels.hashgrid_ref`` (any device, differentiable to any order);
- ``"auto"``: the torch reference on CPU (logged once).

Indexing conventions are in ``kernels.hashgrid_config``.
"""
from __future__ import annotations

import logging

import torch
from torch import Tensor

from kernels.hashgrid_config import HashGridConfig
from kernels.hashgrid_ref import hashgrid_encode_ref

__all__ = ["HashGrid", "HashGridConfig", "hashgrid_encode"]

logger = logging.getLogger(__name__)

IMPLS = ("auto", "torch")


def _check_inputs(x: Tensor, table: Tensor, cfg: HashGridConfig) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"x must have shape [N, 3], got {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.device != table.device:
        raise ValueError(f"x is on {x.device} but the hash-grid table is on {table.device}")
    expected = [cfg.total_rows, cfg.n_features_per_level]
    if list(table.shape) != expected:
        raise ValueError(f"table must have shape {expected}, got {list(table.shape)}")


def hashgrid_encode(
    x: Tensor,  # [N, 3] in [0, 1]^3; points outside are clamped onto the cube
    table: Tensor,  # [cfg.total_rows, F]
    cfg: HashGridConfig,
    impl: str = "torch",
) -> Tensor:  # [N, L * F]
    """Encode positions with an explicit table (the functional form of ``HashGrid``)."""
    _check_inputs(x, table, cfg)
    if impl == "torch":
        return hashgrid_encode_ref(x.to(table.dtype), table, cfg)
    raise ValueError(f"impl must be one of {IMPLS[1:]} here, got {impl!r}")


class HashGrid(torch.nn.Module):
    """Hash-grid encoding with a learnable table.

    forward(x): x [N, 3] in [0, 1]^3 -> [N, L * F]. Points outside the unit cube are
    clamped onto it (their gradient with respect to x is zero along clamped axes).
    The table is fp32, initialised uniform(-1e-4, 1e-4) as in instant-NGP.
    """

    def __init__(self, cfg: HashGridConfig, impl: str = "auto") -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.cfg = cfg
        self.impl = impl
        table = torch.empty(cfg.total_rows, cfg.n_features_per_level, dtype=torch.float32)
        self.table = torch.nn.Parameter(table.uniform_(-1e-4, 1e-4))
        self._logged_fallback = False

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def resolved_impl(self, device: torch.device) -> str:
        """The implementation ``forward`` uses for inputs on ``device``."""
        if self.impl != "auto":
            return self.impl
        if not self._logged_fallback:
            logger.info("HashGrid impl=auto: no CUDA device, using the torch reference")
            self._logged_fallback = True
        return "torch"

    def forward(self, x: Tensor) -> Tensor:  # x [N, 3] -> [N, L * F]
        device = x.device if isinstance(x, Tensor) else self.table.device
        return hashgrid_encode(x, self.table, self.cfg, self.resolved_impl(device))
