"""Plain-torch hash-grid encoding, written for clarity: the oracle for the kernels.

Autograd differentiates it to any order, so it is also the implementation to use when the
gradient with respect to the positions must itself be differentiated (an eikonal loss
trained through ``torch.autograd.grad(..., create_graph=True)``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from hi3d.kernels.hashgrid_config import HASH_PRIMES, HashGridConfig

# The 8 corners of a cell as (dx, dy, dz) offsets in {0, 1}.
_CORNERS = [((c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1) for c in range(8)]


def spatial_hash(coords: Tensor, rows: int) -> Tensor:  # coords [..., 3] int64 -> [...]
    """instant-NGP hash: XOR of coordinate * prime, taken mod 2**32, then mod ``rows``."""
    h = coords[..., 0] * HASH_PRIMES[0]
    h = h ^ (coords[..., 1] * HASH_PRIMES[1])
    h = h ^ (coords[..., 2] * HASH_PRIMES[2])
    return (h & 0xFFFFFFFF) % rows


def vertex_rows(coords: Tensor, resolution: int, rows: int, dense: bool) -> Tensor:
    """Row within a level of each grid vertex.  coords [..., 3] int64 -> [...] int64."""
    if dense:
        side = resolution + 1
        return coords[..., 0] + side * (coords[..., 1] + side * coords[..., 2])
    return spatial_hash(coords, rows)


def hashgrid_encode_ref(
    x: Tensor,  # [N, 3], clamped to [0, 1]^3
    table: Tensor,  # [cfg.total_rows, F]
    cfg: HashGridConfig,
) -> Tensor:  # [N, L * F], level-major
    x = x.clamp(0.0, 1.0)
    features = []
    for level, (res, rows, offset, dense) in enumerate(
        zip(cfg.resolutions, cfg.level_rows, cfg.level_offsets, cfg.dense)
    ):
        pos = x * res
        # floor() carries no gradient, so d(frac)/dx = res: the trilinear slope.
        cell = torch.floor(pos).clamp(max=res - 1)
        frac = pos - cell  # [N, 3] in [0, 1]
        cell = cell.long()
        level_table = table[offset : offset + rows]
        acc = torch.zeros(x.shape[0], table.shape[1], dtype=table.dtype, device=x.device)
        for corner in _CORNERS:
            offset_vec = torch.tensor(corner, device=x.device)
            weight = torch.ones_like(frac[:, 0])
            for axis, bit in enumerate(corner):
                weight = weight * (frac[:, axis] if bit else 1.0 - frac[:, axis])
            idx = vertex_rows(cell + offset_vec, res, rows, dense)
            acc = acc + weight[:, None].to(table.dtype) * level_table[idx]
        features.append(acc)
    return torch.cat(features, dim=1)
