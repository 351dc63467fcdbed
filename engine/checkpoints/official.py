"""Which official file fills which of our networks, and the loading with full key accounting.

The official pipelines build every network from ckpts/ and then load first_stage.pt /
second_stage.pt over them (vtdm `init_from_ckpt`), so a stage file wins wherever it holds
a network; the ckpts/ files are read only for networks a stage file lacks. Embedder
indices follow configs/inference-v01.yaml (stage 1: 0 OpenCLIP, 1 aesthetic, 2 elevation,
3 VAE encoder copy, 4 cond_aug) and inference-v02.yaml (stage 2: 0 OpenCLIP,
1 elevation, 2 MiDaS depth, 3 VAE encoder copy, 4 cond_aug); elevation and cond_aug
embedders have no parameters.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from hi3d.engine.checkpoints.errors import CheckpointError, key_mismatch
from hi3d.engine.checkpoints.files import read_state_dict
from hi3d.engine.checkpoints.keymap import KeyMap, convert, fill
from hi3d.engine.checkpoints.midas import dpt_keymap
from hi3d.engine.checkpoints.openclip import aesthetic_mlp_keymap, clip_keymap
from hi3d.engine.checkpoints.sgm import (
    unet_keymap,
    vae_decoder_keymap,
    vae_encoder_keymap,
)
from hi3d.engine.config import Hi3DConfig

STAGE1 = "first_stage.pt"
STAGE2 = "second_stage.pt"
OPEN_CLIP = "ckpts/open_clip_pytorch_model.bin"
OPENAI_VIT_L = "ckpts/ViT-L-14.pt"
AESTHETIC_MLP = "ckpts/metric_models/sac+logos+ava1-l14-linearMSE.pth"
MIDAS = "ckpts/dpt_hybrid_384.pt"

_ROLES = {
    STAGE1: "Hi3D stage 1 (DeepSpeed checkpoint)",
    STAGE2: "Hi3D stage 2 (DeepSpeed checkpoint)",
    OPEN_CLIP: "OpenCLIP ViT-H-14, read only if the stage files lack it",
    OPENAI_VIT_L: f"OpenAI CLIP ViT-L/14, read only if {STAGE1} lacks it",
    AESTHETIC_MLP: f"LAION aesthetic MLP, read only if {STAGE1} lacks it",
    MIDAS: f"MiDaS DPT-Hybrid, read only if {STAGE2} lacks it",
}
LAYOUT = "expected layout of the weights directory (any file may also be .safetensors):\n" + "\n".join(
    f"  {path:<{max(map(len, _ROLES))}}  {role}" for path, role in _ROLES.items()
)

# Whole subtrees a stage file may hold that no inference network uses.
UNUSED = {
    STAGE1: {},
    STAGE2: {
        # vtdm_gen_stage2_degradeImage.VideoLDM builds DegradedImages.jpeger (basicsr DiffJPEG, with
        # quantisation-table parameters) inside forward, so a trained checkpoint may carry it.
        "warp_model.": "training-time image degradation of the stage-2 trainer; inference never degrades",
    },
}

Reader = Callable[[str], "Mapping[str, Tensor] | None"]  # relative path -> state dict, None if absent


@dataclass(frozen=True)
class Part:
    """The tensors under `prefix` of a stage file fill `module` (or its `sub`module)."""

    prefix: str
    module: str
    keymap: KeyMap
    sub: str = ""
    fallback: str | None = None  # ckpts/ file with the same network, read when the stage file lacks it
    fallback_keymap: KeyMap | None = None
    duplicate: bool = False  # another copy of a network already loaded: checked equal, not loaded


def plan(cfg: Hi3DConfig) -> dict[str, list[Part]]:
    """Stage file -> its parts, in loading order (stage 1 first: stage 2's copies are checked against it)."""
    enc, dec = vae_encoder_keymap(cfg.vae), vae_decoder_keymap(cfg.vae)
    clip = clip_keymap(cfg.clip)
    vae = [Part("first_stage_model.", "vae_encoder", enc), Part("first_stage_model.", "vae_decoder", dec)]
    vae_copy = [Part(p.prefix, p.module, p.keymap, duplicate=True) for p in vae]
    # The conditioner's AutoencoderKLModeOnly holds a whole autoencoder (decoder included).
    cond_vae_copy = [Part("conditioner.embedders.3.encoder.", p.module, p.keymap, duplicate=True) for p in vae]
    open_clip = "conditioner.embedders.0.open_clip.model."
    return {
        STAGE1: [
            Part("model.diffusion_model.", "unet1", unet_keymap(cfg.stage1.unet)),
            *vae,
            Part(open_clip, "clip", clip, fallback=OPEN_CLIP, fallback_keymap=clip_keymap(cfg.clip, whole_clip=True)),
            Part(
                "conditioner.embedders.1.aesthetic_model.", "aesthetic", clip_keymap(cfg.aesthetic.clip, ours="model."),
                sub="clip", fallback=OPENAI_VIT_L,
                fallback_keymap=clip_keymap(cfg.aesthetic.clip, ours="model.", whole_clip=True),
            ),
            Part(
                "conditioner.embedders.1.aesthetic_mlp.", "aesthetic", aesthetic_mlp_keymap(ours=""),
                sub="mlp", fallback=AESTHETIC_MLP, fallback_keymap=aesthetic_mlp_keymap(ours=""),
            ),
            *cond_vae_copy,
        ],
        STAGE2: [
            Part("model.diffusion_model.", "unet2", unet_keymap(cfg.stage2.unet)),
            *vae_copy,
            Part(open_clip, "clip", clip, duplicate=True),
            Part(
                "conditioner.embedders.2.model.model.", "depth", dpt_keymap(cfg.depth),
                fallback=MIDAS, fallback_keymap=dpt_keymap(cfg.depth),
            ),
            *cond_vae_copy,
        ],
    }


def load_official_weights(cfg: Hi3DConfig, modules: dict[str, nn.Module], weights_dir: Path) -> None:
    """Fill `modules` (from engine.models.build_networks; a subset of them, e.g. the one
    network an export needs, by its name) in place from the official files in `weights_dir`.
    Only the files holding those networks are read, and only their tensors converted.

    Raises CheckpointError naming the file, the missing/unexpected keys or the key whose shape differs.
    """
    weights_dir = Path(weights_dir)
    if not weights_dir.is_dir():
        raise CheckpointError(f"weights directory not found: {weights_dir}\n{LAYOUT}")

    def read(rel: str) -> dict[str, Tensor] | None:
        path = _find(weights_dir, rel)
        return None if path is None else read_state_dict(path)

    with torch.no_grad():
        load_from(cfg, modules, read, where=str(weights_dir))


def _find(weights_dir: Path, rel: str) -> Path | None:
    for candidate in (weights_dir / rel, (weights_dir / rel).with_suffix(".safetensors")):
        if candidate.is_file():
            return candidate
    return None


def load_from(cfg: Hi3DConfig, modules: Mapping[str, nn.Module], read: Reader, where: str = "") -> None:
    """The loading itself, over any `read` (files, or in tests a manifest of meta tensors).
    A stage file none of whose networks is in `modules` is not read."""
    for stage_file, parts in plan(cfg).items():
        if not any(p.module in modules and not p.duplicate for p in parts):
            continue
        source = read(stage_file)
        if source is None:
            raise CheckpointError(f"{stage_file} not found in {where or 'the weights directory'}\n{LAYOUT}")
        _load_stage(stage_file, source, parts, modules, read, where)


def _load_stage(
    name: str, source: Mapping[str, Tensor], parts: list[Part], modules: Mapping[str, nn.Module],
    read: Reader, where: str,
) -> None:
    prefixes = list(dict.fromkeys(p.prefix for p in parts))  # plan order: networks before their copies
    known = (*prefixes, *UNUSED[name])
    stray = [k for k in source if not k.startswith(known)]
    if stray:
        raise key_mismatch(f"{name}: keys outside every known network", [], stray)
    for prefix in prefixes:
        view = {k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)}
        group = [p for p in parts if p.prefix == prefix]
        if not view:
            _load_fallbacks(name, prefix, group, modules, read, where)
            continue
        _load_group(f"{name} [{prefix}*]", view, group, modules)


def _load_fallbacks(
    name: str, prefix: str, group: list[Part], modules: Mapping[str, nn.Module], read: Reader, where: str,
) -> None:
    for part in group:
        if part.duplicate or part.module not in modules:
            continue  # a copy we would only have compared, or a network not asked for
        fallback = read(part.fallback) if part.fallback else None
        if fallback is None:
            absent = f", and {part.fallback} is not in {where or 'the weights directory'}" if part.fallback else ""
            raise CheckpointError(f"no weights for {part.module}: {name} has no '{prefix}*' keys{absent}\n{LAYOUT}")
        _load_group(part.fallback, dict(fallback), [Part("", part.module, part.fallback_keymap, part.sub)], modules)


def _knows(keymap: KeyMap, key: str) -> bool:
    return keymap.why_unused(key) is not None or keymap.targets(key) is not None


def _load_group(where: str, view: dict[str, Tensor], group: list[Part], modules: Mapping[str, nn.Module]) -> None:
    """Split `view` among parts sharing a prefix (first table that knows a key owns it), then load each.

    Keys no table knows go to the first part, whose accounting then reports them as unexpected
    next to whatever it misses.
    """
    owned: list[dict[str, Tensor]] = [{} for _ in group]
    for key, tensor in view.items():
        owner = next((i for i, p in enumerate(group) if _knows(p.keymap, key)), 0)
        owned[owner][key] = tensor
    for part, keys in zip(group, owned):
        if part.module not in modules:
            continue  # its keys were still claimed above, so the others' accounting stays exact
        target = modules[part.module].get_submodule(part.sub) if part.sub else modules[part.module]
        label = f"{where} -> {part.module}{'.' + part.sub if part.sub else ''}"
        converted = convert(part.keymap, keys, target, label)
        if part.duplicate:
            _check_equal(label, converted, target)
        else:
            fill(target, converted)


def _check_equal(where: str, copy: Mapping[str, Tensor], module: nn.Module) -> None:
    kept = module.state_dict()
    for key, tensor in copy.items():
        ours = kept[key]
        if ours.is_meta or tensor.is_meta:
            continue  # shapes were checked by convert; values are unknown
        if not torch.equal(ours, tensor.to(ours.dtype)):
            diff = (ours.float() - tensor.float()).abs().max().item()
            raise CheckpointError(
                f"{where}: this copy differs from the one already loaded at {key} (max abs diff {diff:.3g}); "
                "the official files disagree about a network they should share"
            )
