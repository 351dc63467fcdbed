"""Artifacts on disk named by what built them, with a sidecar that makes corruption loud.

Every artifact (an ONNX file plus its external data, a TensorRT plan) gets a sidecar
`<file>.json` holding the key it was built for and the sha256 of each of its files. The
sidecar is written last and atomically, so a crash mid-build leaves no sidecar and the
artifact is rebuilt; a later bit flip or truncation shows up as a hash mismatch.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from hi3d.engine.files import atomic_write_json

_CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def key_hash(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "found cached", or why the artifact cannot be used


def write_sidecar(artifact: Path, key: dict, files: list[Path], extra: dict | None = None) -> None:
    """Record `key` and the hashes of `files` (paths relative to the artifact's folder)."""
    record = {
        "key": key,
        "key_hash": key_hash(key),
        "files": {f.name: sha256_file(f) for f in files},
        **(extra or {}),
    }
    atomic_write_json(sidecar_path(artifact), record)


def read_sidecar(artifact: Path) -> dict | None:
    try:
        return json.loads(sidecar_path(artifact).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def verify(artifact: Path, key: dict) -> Verdict:
    """Can `artifact` be used for `key`? Checks existence, key and every file's sha256."""
    record = read_sidecar(artifact)
    if record is None:
        return Verdict(False, "missing" if not artifact.exists() else "no valid sidecar (interrupted build?)")
    if record.get("key_hash") != key_hash(key):
        changed = sorted(k for k in set(key) | set(record.get("key", {})) if record["key"].get(k) != key.get(k))
        return Verdict(False, f"built for a different configuration (changed: {', '.join(changed)})")
    for name, digest in record["files"].items():
        f = artifact.parent / name
        if not f.exists():
            return Verdict(False, f"file {name} is missing")
        if sha256_file(f) != digest:
            return Verdict(False, f"file {name} is corrupt (sha256 differs from the one recorded at build time)")
    return Verdict(True, "found cached")


def invalidate(artifact: Path) -> None:
    """Drop the sidecar first: an artifact without one is never trusted."""
    sidecar_path(artifact).unlink(missing_ok=True)
