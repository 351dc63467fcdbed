"""Novel-view metrics of the Hi3D paper's Table 1: PSNR, SSIM and LPIPS.

Images are float arrays [H, W, 3] in [0, 1] (RGB composited on white).
- PSNR: 10 log10(1 / MSE) over all pixels and channels (data range 1).
- SSIM: Wang et al. 2004 as scikit-image computes it with `gaussian_weights=True`: an 11 x 11
  Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population (co)variances, the mean of
  the SSIM map over the windows that fit inside the image, averaged over the channels.
- LPIPS: Zhang et al. 2018 ("v0.1" linear heads) on an AlexNet or VGG-16 backbone, from a
  state dict saved from the `lpips` package (`torch.save(lpips.LPIPS(net="vgg").state_dict(),
  path)`): backbone and linear heads in one file, so nothing is downloaded here.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import correlate1d
from torch import Tensor, nn

from hi3d.engine.errors import InvalidInput

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1]; identical images give 120 dB (MSE floored at 1e-12,
    so that JSON gets a number)."""
    mse = float(((np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2).mean())
    return -10.0 * math.log10(max(mse, 1e-12))


def _gaussian_filter(x: np.ndarray) -> np.ndarray:  # [H, W] -> [H - 10, W - 10], 'valid' windows
    r = SSIM_WINDOW // 2
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / SSIM_SIGMA) ** 2)
    k /= k.sum()
    y = correlate1d(correlate1d(x, k, axis=0, mode="reflect"), k, axis=1, mode="reflect")
    return y[r:-r, r:-r]


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean SSIM of two [H, W, 3] images in [0, 1] (H, W >= 11)."""
    a, b = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if a.shape != b.shape or a.ndim != 3 or min(a.shape[:2]) < SSIM_WINDOW:
        raise InvalidInput(f"SSIM needs two equal [H, W, C] images of at least {SSIM_WINDOW} px, "
                           f"got {a.shape} and {b.shape}")
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    scores = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = _gaussian_filter(x), _gaussian_filter(y)
        vx = _gaussian_filter(x * x) - mx * mx
        vy = _gaussian_filter(y * y) - my * my
        cxy = _gaussian_filter(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(s.mean())
    return float(np.mean(scores))


# --- LPIPS --------------------------------------------------------------------------------
# torchvision's `features` layouts; LPIPS taps the ReLU that ends each slice.
_BACKBONES = {
    "alex": dict(convs={0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1),
                        8: (384, 256, 3, 1, 1), 10: (256, 256, 3, 1, 1)},
                 pools={2: (3, 2), 5: (3, 2)}, taps=(1, 4, 7, 9, 11), channels=(64, 192, 384, 256, 256)),
    "vgg": dict(convs={i: (cin, cout, 3, 1, 1) for i, cin, cout in (
                    (0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
                    (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
                    (26, 512, 512), (28, 512, 512))},
                pools={4: (2, 2), 9: (2, 2), 16: (2, 2), 23: (2, 2)}, taps=(3, 8, 15, 22, 29),
                channels=(64, 128, 256, 512, 512)),
}


class LPIPS(nn.Module):
    def __init__(self, net: str):
        super().__init__()
        spec = _BACKBONES[net]
        layers: list[nn.Module] = []
        for i in range(spec["taps"][-1] + 1):
            if i in spec["convs"]:
                cin, cout, k, s, p = spec["convs"][i]
                layers.append(nn.Conv2d(cin, cout, k, s, p))
            elif i in spec["pools"]:
                layers.append(nn.MaxPool2d(*spec["pools"][i]))
            else:
                layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.taps = spec["taps"]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in spec["channels"])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def _taps(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    @torch.no_grad()
    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:  # [N, 3, H, W] in [0, 1] each -> [N]
        fa = self._taps(((pred * 2 - 1) - self.shift) / self.scale)
        fb = self._taps(((gt * 2 - 1) - self.shift) / self.scale)
        return sum(lin((a - b) ** 2).mean((2, 3))[:, 0] for lin, a, b in zip(self.lins, fa, fb))


def load_lpips(path: str | os.PathLike) -> LPIPS:
    """An `lpips.LPIPS(...).state_dict()` file (keys net.sliceK.I.*, linK.model.1.weight)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise InvalidInput(f"--lpips-weights {path}: not a readable torch state dict ({e})") from None
    first = state.get("net.slice1.0.weight") if isinstance(state, dict) else None
    if first is None or "lin0.model.1.weight" not in state:
        raise InvalidInput(f"--lpips-weights {path}: expected an lpips.LPIPS state dict "
                           "(keys net.slice1.0.weight ... and lin0.model.1.weight ...)")
    net = "alex" if first.shape[-1] == 11 else "vgg"
    model = LPIPS(net)
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "net":  # net.sliceK.I.weight -> features.I.weight
            mapped[f"features.{parts[2]}.{parts[3]}"] = value
        elif parts[0].startswith("lin"):  # linK.model.1.weight -> lins.K.weight
            mapped[f"lins.{parts[0][3:]}.weight"] = value
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if k not in ("shift", "scale")]
    if missing or unexpected:
        raise InvalidInput(f"--lpips-weights {path}: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model.eval()


def lpips_distance(model: LPIPS, pred: np.ndarray, gt: np.ndarray) -> float:
    """LPIPS of two [H, W, 3] images in [0, 1]."""
    def t(x: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, np.float32)).permute(2, 0, 1)[None]

    return float(model(t(pred), t(gt))[0])


def resize(image: np.ndarray, size: int) -> np.ndarray:  # [H, W, 3] -> [size, size, 3]
    """Area-averaged (antialiased) resize, for comparing views of different resolutions."""
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None]
    return F.interpolate(x, (size, size), mode="area" if size < image.shape[0] else "bilinear")[0].permute(1, 2, 0).numpy()
