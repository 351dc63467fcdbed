"""Key tables: official name -> our name (+ tensor transform), with complete accounting.

A `KeyMap` is generated from the config by each source module (sgm.py, openclip.py,
midas.py): `blocks` maps official block prefixes to ours (the part that depends on the
network's size), `leaves` renames what follows the prefix, `splits` unfuses fused
tensors (q/k/v), and `unused` names the official keys nothing needs, with the reason.
`convert` then accounts for every key on both sides.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from hi3d.engine.checkpoints.errors import CheckpointError, key_mismatch

Transform = Callable[[Tensor], Tensor]


def same(t: Tensor) -> Tensor:
    return t


def transpose(t: Tensor) -> Tensor:  # [a, b] -> [b, a]
    return t.t()


def conv1x1_to_linear(t: Tensor) -> Tensor:  # [out, in, 1, 1] -> [out, in]; LDM attention is 1x1 convs
    return t.reshape(t.shape[0], t.shape[1]) if t.ndim == 4 else t


def chunk(i: int, n: int = 3) -> Transform:
    """Part i of n along dim 0 (fused in_proj / qkv tensors are [q; k; v])."""

    def take(t: Tensor) -> Tensor:
        size = t.shape[0] // n
        return t[i * size:(i + 1) * size]

    return take


@dataclass(frozen=True)
class KeyMap:
    blocks: dict[str, str]  # official prefix -> our prefix; the longest matching prefix wins
    # (regex on the rest of the key, replacement[, regex the official prefix must match]); first match wins
    leaves: tuple[tuple[str, ...], ...] = ()
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)  # fused leaf -> our leaves, in order
    transforms: tuple[tuple[str, Transform], ...] = ()  # (regex on the official key, transform)
    unused: dict[str, str] = field(default_factory=dict)  # official key or prefix -> why nothing needs it

    def __post_init__(self) -> None:
        # Longest prefix first so 'input_blocks.1.' never captures 'input_blocks.10.'.
        object.__setattr__(self, "_order", sorted(self.blocks, key=len, reverse=True))

    def why_unused(self, key: str) -> str | None:
        return next((why for k, why in self.unused.items() if key == k or (k.endswith(".") and key.startswith(k))), None)

    def targets(self, key: str) -> list[tuple[str, Transform]] | None:
        """Our key(s) and transforms for one official key; None when the table does not know it."""
        prefix = next((p for p in self._order if key.startswith(p)), None)
        if prefix is None:
            return None
        rest = key[len(prefix):]
        for pattern, replacement, *scope in self.leaves:
            if re.match(pattern, rest) and (not scope or re.search(scope[0], prefix)):
                rest = re.sub(pattern, replacement, rest, count=1)
                break
        transform = next((t for pattern, t in self.transforms if re.search(pattern, key)), same)
        ours = self.blocks[prefix] + rest
        for fused, parts in self.splits.items():
            if ours.endswith(fused):
                stem = ours[: -len(fused)]
                return [(stem + part, chunk(i, len(parts))) for i, part in enumerate(parts)]
        return [(ours, transform)]


def convert(keymap: KeyMap, source: Mapping[str, Tensor], module: nn.Module, where: str) -> dict[str, Tensor]:
    """Our state dict for `module` from `source` (official names), every key on both sides accounted for.

    Raises CheckpointError listing missing/unexpected keys, or naming a key whose shape differs.
    """
    expected = module.state_dict()
    converted: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in source.items():
        if keymap.why_unused(key) is not None:
            continue
        targets = keymap.targets(key)
        if targets is None or any(ours not in expected for ours, _ in targets):
            unexpected.append(key)
            continue
        for ours, transform in targets:
            value = transform(tensor)
            if tuple(value.shape) != tuple(expected[ours].shape):
                raise CheckpointError(
                    f"{where}: shape mismatch for {key} -> {ours}: "
                    f"expected {tuple(expected[ours].shape)}, got {tuple(value.shape)}"
                )
            converted[ours] = value
    missing = [k for k in expected if k not in converted]
    if missing or unexpected:
        raise key_mismatch(where, missing, unexpected)
    return converted


def fill(module: nn.Module, converted: Mapping[str, Tensor]) -> None:
    """Copy converted tensors into `module` in place (casting to its dtypes).

    Meta tensors (names and shapes only, as in the full-size tests) are a dry run: `convert`
    has already checked them, and there is nothing to copy.
    """
    if any(t.is_meta for t in converted.values()):
        return
    module.load_state_dict(dict(converted), strict=True)
