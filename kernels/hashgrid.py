"""Multiresolution hash-grid encoding (instant-NGP) as a torch module.

``HashGrid(cfg, impl)`` owns the table and dispatches to one implementation:

- ``"triton"``: our Triton kernels (``kernels.hashgrid_triton``), CUDA tensors (or CPU
  under ``TRITON_INTERPRET=1``, for tests);
- ``"cuda"``: our CUDA C kernels (``kernels/cuda/hashgrid.cu``) loaded through CuPy;
- ``"torch"``: ``kernels.hashgrid_ref`` (any device, differentiable to any order);
- ``"tcnn"``: tiny-cuda-nn's fused encoding, when ``tinycudann`` is importable (its own
  parameter layout and grid alignment: values differ from ours);
- ``"auto"``: triton on CUDA, else cuda (CuPy) if triton is missing; torch on CPU.

The kernel implementations give first derivatives with respect to the table and the
positions; their backward is not itself differentiable and raises under
``create_graph=True``. When a
loss needs d/dtable of d(encoding)/dx (an eikonal term through
``autograd.grad(create_graph=True)``), use ``impl="torch"`` or finite differences.

Indexing conventions are in ``kernels.hashgrid_config``.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Callable

import torch
from torch import Tensor

from hi3d.kernels.hashgrid_config import HashGridConfig
from hi3d.kernels.hashgrid_ref import hashgrid_encode_ref

__all__ = ["HashGrid", "HashGridConfig", "hashgrid_encode", "level_table"]

logger = logging.getLogger(__name__)

IMPLS = ("auto", "triton", "cuda", "torch", "tcnn")


def level_table(cfg: HashGridConfig, device: torch.device | str) -> Tensor:  # [4, L] int32
    """Per-level kernel metadata: resolution, first row, rows, dense flag."""
    rows = [cfg.resolutions, cfg.level_offsets, cfg.level_rows, [int(d) for d in cfg.dense]]
    return torch.tensor(rows, dtype=torch.int32, device=device)


def _kernel_ops(impl: str) -> tuple[Callable, Callable]:
    """(forward, backward) launchers of a kernel implementation, imported lazily."""
    if impl == "triton":
        from hi3d.kernels.hashgrid_triton import (
            hashgrid_bwd_triton,
            hashgrid_fwd_triton,
        )

        return hashgrid_fwd_triton, hashgrid_bwd_triton
    from hi3d.kernels.cuda_loader import hashgrid_bwd_cuda, hashgrid_fwd_cuda

    return hashgrid_fwd_cuda, hashgrid_bwd_cuda


class _HashGridFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, levels: Tensor, impl: str) -> Tensor:
        fwd, _ = _kernel_ops(impl)
        ctx.save_for_backward(x, table, levels)
        ctx.impl = impl
        return fwd(x, table, levels)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if torch.is_grad_enabled():  # backward(create_graph=True): would silently drop terms
            raise RuntimeError(
                f"HashGrid impl={ctx.impl!r} is once-differentiable: its gradient cannot be "
                "differentiated again (create_graph=True); use impl='torch' for that"
            )
        x, table, levels = ctx.saved_tensors
        _, bwd = _kernel_ops(ctx.impl)
        grad_table, grad_x = bwd(x, table, levels, grad_out.contiguous(), ctx.needs_input_grad[0])
        return grad_x, grad_table, None, None


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
    levels: Tensor | None = None,  # [4, L] int32 from level_table(); built when None
) -> Tensor:  # [N, L * F]
    """Encode positions with an explicit table (the functional form of ``HashGrid``)."""
    _check_inputs(x, table, cfg)
    if impl == "torch":
        return hashgrid_encode_ref(x.to(table.dtype), table, cfg)
    if impl not in ("triton", "cuda"):
        raise ValueError(f"impl must be 'triton', 'cuda' or 'torch' here, got {impl!r}")
    if table.dtype != torch.float32:
        raise TypeError(f"table must be float32 for impl={impl!r}, got {table.dtype}")
    if impl == "cuda" and x.device.type != "cuda":
        raise ValueError(f"impl='cuda' needs x and the table on a CUDA device, got {x.device}")
    if levels is None:
        levels = level_table(cfg, table.device)
    x = x.to(torch.float32).contiguous()
    return _HashGridFunction.apply(x, table.contiguous(), levels, impl)


class HashGrid(torch.nn.Module):
    """Hash-grid encoding with a learnable table.

    forward(x): x [N, 3] in [0, 1]^3 -> [N, L * F] fp32. Points outside the unit cube are
    clamped onto it (their gradient with respect to x is zero along clamped axes).
    The table is fp32 [cfg.total_rows, F], initialised uniform(-1e-4, 1e-4) as in
    instant-NGP. With impl="tcnn" the parameters live in tiny-cuda-nn's module instead.
    """

    def __init__(self, cfg: HashGridConfig, impl: str = "auto") -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.cfg = cfg
        self.impl = impl
        self._logged_fallback = False
        if impl == "tcnn":
            self.tcnn = _tcnn_encoding(cfg)
            return
        table = torch.empty(cfg.total_rows, cfg.n_features_per_level, dtype=torch.float32)
        self.table = torch.nn.Parameter(table.uniform_(-1e-4, 1e-4))
        # Kernel metadata travels with .to(device); not part of the state dict.
        self.register_buffer("levels", level_table(cfg, "cpu"), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def resolved_impl(self, device: torch.device) -> str:
        """The implementation ``forward`` uses for inputs on ``device``."""
        if self.impl != "auto":
            return self.impl
        if device.type != "cuda":
            if not self._logged_fallback:
                logger.info("HashGrid impl=auto: input is not on a CUDA device, using the torch reference")
                self._logged_fallback = True
            return "torch"
        if importlib.util.find_spec("triton") is not None:
            return "triton"
        if not self._logged_fallback:
            logger.info("HashGrid impl=auto: triton is not installed, using the CUDA (CuPy) kernels")
            self._logged_fallback = True
        return "cuda"

    def forward(self, x: Tensor) -> Tensor:  # x [N, 3] -> [N, L * F]
        if self.impl == "tcnn":
            return _tcnn_forward(self.tcnn, x)
        device = x.device if isinstance(x, Tensor) else self.table.device
        impl = self.resolved_impl(device)
        return hashgrid_encode(x, self.table, self.cfg, impl, self.levels)


def _tcnn_encoding(cfg: HashGridConfig) -> torch.nn.Module:
    if importlib.util.find_spec("tinycudann") is None:
        raise RuntimeError("impl='tcnn' needs tiny-cuda-nn (the tinycudann package), which is not installed")
    import tinycudann as tcnn

    config = {
        "otype": "HashGrid",
        "n_levels": cfg.n_levels,
        "n_features_per_level": cfg.n_features_per_level,
        "log2_hashmap_size": cfg.log2_hashmap_size,
        "base_resolution": cfg.base_resolution,
        "per_level_scale": cfg.per_level_scale,
    }
    return tcnn.Encoding(3, config, dtype=torch.float32)


def _tcnn_forward(encoding: torch.nn.Module, x: Tensor) -> Tensor:  # [N, 3] -> [N, L * F]
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"x must be a tensor of shape [N, 3], got {getattr(x, 'shape', type(x))}")
    return encoding(x.clamp(0.0, 1.0)).float()
