"""Image I/O: decode and validate inputs, Hi3D's preprocessing, atomic PNG writing."""
from __future__ import annotations

import io
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from hi3d.engine.errors import InvalidInput
from hi3d.engine.files import atomic_write

MAX_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs before decoding


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """Bytes -> RGBA PIL image, with clear errors for empty, non-image or huge inputs."""
    if not data:
        raise InvalidInput(f"{name} is empty")
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise InvalidInput(f"{name} is {w}x{h}: more than {MAX_PIXELS} pixels")
        if min(w, h) < 16:
            raise InvalidInput(f"{name} is {w}x{h}: too small (needs at least 16x16)")
        img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise InvalidInput(f"{name} is not a readable image ({e})") from None
    return img.convert("RGBA")


def load_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    return decode_image(path.read_bytes(), str(path))


def remove_background(img: Image.Image) -> Image.Image:
    """Foreground matting with rembg (optional dependency: pip install hi3d-engine[rembg])."""
    try:
        import rembg
    except ImportError as e:
        raise InvalidInput("background removal needs rembg: pip install 'hi3d-engine[rembg]'") from e
    return rembg.remove(img).convert("RGBA")


def on_white(img: Image.Image) -> Tensor:
    """RGBA -> RGB composited on white, [3, H, W] in [0, 1]."""
    rgba = torch.from_numpy(np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    rgb, a = rgba[:3], rgba[3:]
    return rgb * a + (1.0 - a)


def square_crop(rgb: Tensor, size: int) -> Tensor:
    """Short side to `size` (bilinear, like cv2.INTER_LINEAR upstream), centre crop -> [1, 3, S, S] in [-1, 1]."""
    _, h, w = rgb.shape
    rate = size / min(h, w)
    nh, nw = math.ceil(h * rate), math.ceil(w * rate)
    x = F.interpolate(rgb[None], (nh, nw), mode="bilinear", align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size].clamp(0, 1) * 2.0 - 1.0


def to_uint8(x: Tensor) -> np.ndarray:
    """[3, H, W] in [-1, 1] -> [H, W, 3] uint8."""
    return ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def contact_sheet(views: Tensor, cols: int = 4) -> np.ndarray:
    """[F, 3, H, W] -> one [rows*H, cols*W, 3] uint8 grid."""
    f, _, h, w = views.shape
    rows = math.ceil(f / cols)
    sheet = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, v in enumerate(views):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = to_uint8(v)
    return sheet


def write_view_pngs(views: Iterable[np.ndarray], out_dir: Path) -> list[Path]:
    """[H, W, 3 or 4] uint8 images -> out_dir/000.png, 001.png ..., each atomically: a reader
    never sees half a PNG."""
    paths = []
    for i, v in enumerate(views):
        paths.append(Path(out_dir) / f"{i:03d}.png")
        atomic_write(paths[-1], png_bytes(v))
    return paths


def save_views(views: Tensor, out_dir: Path) -> list[Path]:
    """Write 000.png ... and contact_sheet.png into out_dir, each atomically."""
    paths = write_view_pngs((to_uint8(v) for v in views), out_dir)
    atomic_write(out_dir / "contact_sheet.png", png_bytes(contact_sheet(views)))
    return paths
