"""Input views: loading from a folder, validation, resizing and foreground masks.

Views are tensors [V, 3, H, W] with values in [0, 1] (convert Hi3D's decoded [-1, 1]
frames with (x + 1) / 2), square, on a white background, in orbit order (frame k at
azimuth 360 k / V, see engine.cameras).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from torch import Tensor

from hi3d.engine.cameras import HI3D_NUM_VIEWS
from hi3d.engine.errors import InvalidInput

WHITE_THRESHOLD = 0.9  # a pixel whose channels are all above this counts as white
MIN_WHITE_BORDER = 0.9  # share of border pixels that must be white
BACKGROUND_TOLERANCE = 0.1  # background = near-white (all channels > 1 - this), connected to the border


def load_views(folder: str | os.PathLike, num_views: int = HI3D_NUM_VIEWS) -> Tensor:  # [V, 3, H, W]
    """Read the views of `folder`, named by their orbit index (000.png ... 015.png, or
    0.png ... 15.png), in numeric order: 2.png comes before 10.png. Other files, such as
    the contact_sheet.png that `hi3d generate` writes beside them, are not views.
    RGBA images are composited on white.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"views folder {folder} does not exist or is not a directory")
    numbered = [p for p in folder.iterdir() if p.is_file() and p.stem.isdigit() and not p.name.startswith(".")]
    files = sorted(numbered, key=lambda p: int(p.stem))
    if [int(p.stem) for p in files] != list(range(num_views)):
        found = ", ".join(p.name for p in files[:20]) or "none"
        raise InvalidInput(f"expected {num_views} views named 0..{num_views - 1} (e.g. 000.png ... "
                           f"{num_views - 1:03d}.png) in {folder}, found: {found}")
    views = []
    for path in files:
        try:
            with Image.open(path) as im:
                im.load()
                rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as e:
            raise InvalidInput(f"{path} is not a readable image: {e}") from e
        rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
        views.append(torch.from_numpy(rgb).permute(2, 0, 1))
    sizes = {tuple(v.shape[1:]) for v in views}
    if len(sizes) != 1:
        raise InvalidInput(f"view images in {folder} have different sizes: {sorted(sizes)}")
    return torch.stack(views)


def check_views(views: Tensor, num_views: int = HI3D_NUM_VIEWS) -> None:
    if not isinstance(views, Tensor) or views.dim() != 4 or views.shape[1] != 3:
        shape = list(views.shape) if isinstance(views, Tensor) else type(views).__name__
        raise InvalidInput(f"views must be a tensor [V, 3, H, W], got {shape}")
    if views.shape[0] != num_views:
        raise InvalidInput(f"Hi3D reconstruction needs {num_views} orbit views, got {views.shape[0]}")
    if views.shape[2] != views.shape[3]:
        raise InvalidInput(f"views must be square, got {views.shape[2]}x{views.shape[3]}")
    if views.shape[2] < 16:
        raise InvalidInput(f"views are too small ({views.shape[2]} px); use at least 16 px")
    lo, hi = float(views.min()), float(views.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        hint = " (for [-1, 1] frames pass (views + 1) / 2)" if lo >= -1.0 - 1e-3 else ""
        raise InvalidInput(f"views must have values in [0, 1], got [{lo:.3f}, {hi:.3f}]{hint}")
    for i, v in enumerate(views):
        border = torch.cat([v[:, 0], v[:, -1], v[:, :, 0], v[:, :, -1]], 1)  # [3, 4 * S]
        white = (border > WHITE_THRESHOLD).all(0).float().mean()
        if white < MIN_WHITE_BORDER:
            raise InvalidInput(
                f"view {i} does not have a white background ({100 * float(white):.0f}% of its border "
                f"pixels are white, need {100 * MIN_WHITE_BORDER:.0f}%): remove the background first"
            )


def resize_views(views: Tensor, size: int) -> Tensor:  # [V, C, H, W] -> [V, C, size, size]
    if views.shape[-1] == size:
        return views
    mode = "area" if size < views.shape[-1] else "bilinear"
    return F.interpolate(views, size=(size, size), mode=mode).clamp(0.0, 1.0)


def foreground_masks(views: Tensor) -> Tensor:  # [V, 3, H, W] -> [V, H, W] in {0, 1}
    """Object = everything except the near-white region connected to the image border.

    White parts of the object that the background does not reach stay foreground.
    """
    out = []
    for v in views.cpu().numpy():
        white = (v > 1.0 - BACKGROUND_TOLERANCE).all(0)
        labels, _ = ndimage.label(white)
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        background = np.isin(labels, edge[edge > 0])
        out.append(torch.from_numpy(~background))
    return torch.stack(out).float().to(views.device)
