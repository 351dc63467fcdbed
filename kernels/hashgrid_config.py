"""Hash-grid encoding settings and the per-level layout every implementation shares.

Conventions (instant-NGP, Mueller et al. 2022, section 3), written down once so that the
torch reference, the Triton kernels and the CUDA kernels agree bit for bit on indexing:

- Level l has resolution ``N_l = floor(base_resolution * b**l)`` with
  ``b = exp((ln max_resolution - ln base_resolution) / (n_levels - 1))``, so level 0 is
  ``base_resolution`` and the last level is ``max_resolution``.
- A point ``x`` in [0, 1]^3 is scaled to ``x * N_l``; its cell's lower corner is
  ``floor(x * N_l)``, capped at ``N_l - 1`` so that x == 1 interpolates inside the last
  cell instead of reading a vertex beyond the grid. Vertices run 0..N_l per axis.
- A level is *dense* when its ``(N_l + 1)**3`` vertices fit in ``2**log2_hashmap_size``
  rows: vertex (i, j, k) lives at row ``i + j*(N_l+1) + k*(N_l+1)**2``. Otherwise it is
  *hashed*: row ``(i*1 XOR j*2654435761 XOR k*805459861) mod 2**32 mod 2**log2_hashmap_size``.
- All levels live in one table of ``total_rows`` rows x ``n_features_per_level``; level l
  starts at row ``level_offsets[l]`` and uses ``level_rows[l]`` rows. The encoding of a
  point is the levels' interpolated features concatenated level-major: [N, L * F].

tiny-cuda-nn uses a slightly different alignment (a half-cell offset, ``N_l = ceil(...)+1``),
so its values differ from ours; it is offered only as an alternative backend and a
speed baseline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# Spatial-hash primes of instant-NGP; the first is 1 so that the x axis stays coherent.
HASH_PRIMES: tuple[int, int, int] = (1, 2654435761, 805459861)


@dataclass(frozen=True)
class HashGridConfig:
    """Multiresolution hash encoding; defaults follow instant-nsr-pl's NeuS setup."""

    n_levels: int = 16  # L
    n_features_per_level: int = 2  # F; a power of two (the kernels load F-wide vectors)
    log2_hashmap_size: int = 19  # T = 2**19 rows per hashed level
    base_resolution: int = 16  # N_0
    # N_{L-1}. tiny-cuda-nn's example per_level_scale 1.447 with base 16 is max 4096.
    max_resolution: int = 2048

    def __post_init__(self) -> None:
        if self.n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {self.n_levels}")
        if self.n_features_per_level not in (1, 2, 4, 8):
            raise ValueError(
                f"n_features_per_level must be 1, 2, 4 or 8, got {self.n_features_per_level}"
            )
        if not 2 <= self.log2_hashmap_size <= 26:
            raise ValueError(f"log2_hashmap_size must be in [2, 26], got {self.log2_hashmap_size}")
        if self.base_resolution < 1:
            raise ValueError(f"base_resolution must be >= 1, got {self.base_resolution}")
        if self.max_resolution < self.base_resolution:
            raise ValueError(
                f"max_resolution ({self.max_resolution}) must be >= base_resolution "
                f"({self.base_resolution})"
            )
        # The kernels index the table with int32.
        if self.total_rows * self.n_features_per_level >= 2**31:
            raise ValueError("table too large for int32 indexing: lower log2_hashmap_size")

    @property
    def per_level_scale(self) -> float:
        """b, the growth factor between consecutive level resolutions."""
        if self.n_levels == 1:
            return 1.0
        return math.exp(
            (math.log(self.max_resolution) - math.log(self.base_resolution)) / (self.n_levels - 1)
        )

    @property
    def resolutions(self) -> tuple[int, ...]:
        """N_l per level (cells per axis)."""
        b = self.per_level_scale
        # The 1e-6 guard keeps round-off from landing the last level on max_resolution - 1.
        return tuple(
            int(math.floor(self.base_resolution * b**level + 1e-6)) for level in range(self.n_levels)
        )

    @property
    def hashmap_size(self) -> int:
        return 2**self.log2_hashmap_size

    @property
    def dense(self) -> tuple[bool, ...]:
        """Whether each level is indexed densely (its vertices fit in the table)."""
        return tuple((n + 1) ** 3 <= self.hashmap_size for n in self.resolutions)

    @property
    def level_rows(self) -> tuple[int, ...]:
        return tuple(
            (n + 1) ** 3 if d else self.hashmap_size for n, d in zip(self.resolutions, self.dense)
        )

    @property
    def level_offsets(self) -> tuple[int, ...]:
        offsets, start = [], 0
        for rows in self.level_rows:
            offsets.append(start)
            start += rows
        return tuple(offsets)

    @property
    def total_rows(self) -> int:
        return sum(self.level_rows)

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features_per_level
