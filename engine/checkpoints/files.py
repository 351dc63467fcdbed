"""Reading official weight files into flat {key: tensor} dicts, memory-mapped where possible.

Handles the containers the official release uses: DeepSpeed pickles
(`{'module': {'module.<key>': tensor}}`), Lightning checkpoints (`{'state_dict': ...}`),
MiDaS files (`{'model': ..., 'optimizer': ...}`), TorchScript archives (OpenAI CLIP's
ViT-L-14.pt), plain state dicts and .safetensors.
"""
from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from hi3d.engine.checkpoints.errors import CheckpointError

_NESTED = ("module", "state_dict", "model")  # containers seen around the weights, outermost first


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A flat {key: tensor} dict from `path`; tensors stay memory-mapped when the format allows."""
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _flatten(load_file(str(path)), path)
    if zipfile.is_zipfile(path) and _is_torchscript(path):
        return _flatten(torch.jit.load(str(path), map_location="cpu").state_dict(), path)
    return _flatten(_torch_load(path), path)


def _is_torchscript(path: Path) -> bool:
    # TorchScript archives carry their code next to the tensors; torch.save files do not.
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _torch_load(path: Path) -> object:
    mmap = zipfile.is_zipfile(path)  # the legacy (pre-1.6) format cannot be memory-mapped
    try:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as safe_error:
        # DeepSpeed pickles also hold optimizer and config objects the safe loader refuses.
        # These are the official files the user placed; the official code loads them this way.
        if "Unsupported global" not in str(safe_error):
            raise CheckpointError(f"cannot read {path}: {safe_error}") from safe_error
        warnings.warn(f"{path.name}: not loadable with weights_only=True ({safe_error}); loading the full pickle")
        try:
            return torch.load(path, map_location="cpu", mmap=mmap, weights_only=False)
        except Exception as error:  # noqa: BLE001 - any failure here means an unreadable file
            raise CheckpointError(f"cannot read {path}: {error}") from error
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"cannot read {path}: {error}") from error


def _flatten(obj: object, path: Path) -> dict[str, Tensor]:
    for _ in range(len(_NESTED)):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _NESTED if isinstance(obj.get(k), Mapping)), None)
            if inner is not None and not any(isinstance(v, Tensor) for v in obj.values()):
                obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if len(tensors) != len(obj):
        odd = [k for k in obj if k not in tensors][:5]
        raise CheckpointError(f"{path}: entries that are not tensors: {odd}")
    # DeepSpeed wraps the model once more: every key starts with 'module.'.
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors
