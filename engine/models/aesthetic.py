"""The LAION aesthetic predictor Hi3D conditions stage 1 on (tools/aes_score.py upstream)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from hi3d.engine.config import AestheticConfig
from hi3d.engine.models.clip import CLIPImageTower


class AestheticMLP(nn.Module):
    """Linear stack with the upstream layer indices (dropout slots kept so keys match)."""

    def __init__(self, in_dim: int, dims: tuple[int, ...]):
        super().__init__()
        h1, h2, h3, h4 = dims
        self.layers = nn.Sequential(
            nn.Linear(in_dim, h1), nn.Dropout(0.2),
            nn.Linear(h1, h2), nn.Dropout(0.2),
            nn.Linear(h2, h3), nn.Dropout(0.1),
            nn.Linear(h3, h4),
            nn.Linear(h4, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class AestheticScorer(nn.Module):
    def __init__(self, cfg: AestheticConfig):
        super().__init__()
        self.clip = CLIPImageTower(cfg.clip)
        self.mlp = AestheticMLP(cfg.clip.embed_dim, cfg.mlp_dims)

    def forward(self, pixels: Tensor) -> Tensor:  # [N, 3, S, S] CLIP-normalised -> [N, 1]
        features = F.normalize(self.clip(pixels).float(), dim=-1)
        return self.mlp(features.to(self.mlp.layers[0].weight.dtype))
