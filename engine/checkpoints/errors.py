"""The one error type of checkpoint loading, with the key lists users need to act on it."""
from __future__ import annotations

from collections.abc import Sequence

from hi3d.engine.errors import InvalidInput

SHOWN = 20  # keys listed per category; counts are always complete


class CheckpointError(InvalidInput):
    """An official file is missing, unreadable, or does not fit our networks."""


def _listing(title: str, keys: Sequence[str]) -> str:
    shown = "\n".join(f"    {k}" for k in sorted(keys)[:SHOWN])
    more = f"\n    ... and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return f"  {title} ({len(keys)}):\n{shown}{more}"


def key_mismatch(where: str, missing: Sequence[str], unexpected: Sequence[str]) -> CheckpointError:
    """`missing`: our parameters nothing filled; `unexpected`: source keys nothing consumed."""
    parts = [f"{where}: {len(missing)} missing and {len(unexpected)} unexpected keys"]
    if missing:
        parts.append(_listing("missing (parameters of ours that no source key fills)", missing))
    if unexpected:
        parts.append(_listing("unexpected (source keys that nothing consumes)", unexpected))
    return CheckpointError("\n".join(parts))
