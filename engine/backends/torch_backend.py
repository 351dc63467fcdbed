"""PyTorch runners: eager (the reference for every parity test) and torch.compile'd."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from hi3d.engine.backends import Networks
from hi3d.engine.config import Hi3DConfig
from hi3d.engine.models import build_networks


class TorchRunner:
    """Runs a module without autograd, casting floating inputs to the module's dtype."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, compile: bool = False):
        self.module = module.eval()
        self.dtype = dtype
        self.fn = torch.compile(self.module, mode="max-autotune-no-cudagraphs") if compile else self.module

    @torch.inference_mode()
    def __call__(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        return self.fn(*(x.to(self.dtype) if x.is_floating_point() else x for x in inputs))


def load_modules(cfg: Hi3DConfig, weights: Path | None = None) -> dict[str, nn.Module]:
    """Random (seeded) networks, or the official weights when `weights` names their folder."""
    modules = build_networks(cfg, seed=cfg.seed_weights)
    if weights is not None:
        from hi3d.engine.checkpoints import load_official_weights

        load_official_weights(cfg, modules, Path(weights))
    return modules


def torch_networks(
    modules: dict[str, nn.Module], device: torch.device, dtype: torch.dtype, compile: bool = False
) -> Networks:
    runners = {name: TorchRunner(m.to(device=device, dtype=dtype), dtype, compile) for name, m in modules.items()}
    # The aesthetic MLP runs in fp32 upstream (its input is L2-normalised numpy features).
    modules["aesthetic"].mlp.float()
    return Networks(**runners, device=device, dtype=dtype)
