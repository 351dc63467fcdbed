"""Gaussian rasterizer: torch reference vs gsplat's pure-torch code and a brute-force
per-pixel compositor; Triton kernels (interpreted on CPU) vs the torch reference."""
from __future__ import annotations

import pytest
import torch

from kernels import gaussians_ref as ref
from kernels.gaussians import rasterize
from tests.kernels.gaussian_scenes import intrinsics, look_at_viewmat, random_scene

gsplat_impl = pytest.importorskip("gsplat.cuda._torch_impl")

W, H = 40, 36


def camera(width: int = W, height: int = H):
    return look_at_viewmat((0.3, -0.4, 2.2)), intrinsics(width, height)


def brute_force_composite(means2d, conics, opacities, feats, depths, radii, width, height):
    """Per-pixel sequential front-to-back loop, straight from the 3DGS paper's rules."""
    order = torch.argsort(depths)
    img = torch.zeros(height, width, feats.shape[1])
    T_img = torch.ones(height, width)
    for i in range(height):
        for j in range(width):
            T = 1.0
            for g in order.tolist():
                if (radii[g] <= 0).any():
                    continue
                dx, dy = means2d[g, 0] - (j + 0.5), means2d[g, 1] - (i + 0.5)
                a, b, c = conics[g]
                s = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                alpha = min(0.999, float(opacities[g] * torch.exp(-s)))
                if s < 0 or alpha < 1 / 255:
                    continue
                if T * (1 - alpha) <= 1e-4:
                    break
                img[i, j] += alpha * T * feats[g]
                T *= 1 - alpha
            T_img[i, j] = T
    return img, T_img


def test_projection_matches_gsplat():
    s = random_scene(150, seed=1)
    view, K = camera()
    s["means"][:5, 2] = 3.0  # behind the camera (camera at z~2.2 looking at -z): culled
    s["means"][5:10, 0] = 4.0  # in front of the camera but off-screen: culled
    ours = ref.project(s["means"], s["quats"], s["scales"], view, K, W, H)
    covars, _ = gsplat_impl._quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    radii, means2d, depths, conics, _ = gsplat_impl._fully_fused_projection(
        s["means"], covars, view[None], K[None], W, H
    )
    assert torch.equal(ours.radii, radii[0])
    vis = radii[0].gt(0).all(-1)
    assert not vis[:10].any() and vis.sum() > 100
    torch.testing.assert_close(ours.means2d[vis], means2d[0][vis], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours.depths, depths[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.conics[vis], conics[0][vis], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree):
    g = torch.Generator().manual_seed(degree)
    coeffs = torch.randn(64, (degree + 1) ** 2, 3, generator=g)
    dirs = torch.randn(64, 3, generator=g)
    expected = torch.clamp_min(gsplat_impl._spherical_harmonics(degree, dirs, coeffs) + 0.5, 0.0)
    torch.testing.assert_close(ref.eval_sh(coeffs, dirs), expected, rtol=1e-5, atol=1e-5)


def test_tile_binning_matches_gsplat_isect():
    s = random_scene(60, seed=2)
    view, K = camera()
    p = ref.project(s["means"], s["quats"], s["scales"], view, K, W, H)
    tw, th = (W + 15) // 16, (H + 15) // 16
    tiles_per_gauss, _, _ = gsplat_impl._isect_tiles(p.means2d[None], p.radii[None], p.depths[None], 16, tw, th)
    lo, hi = ref.tile_bounds(p.means2d, p.radii, W, H)
    assert torch.equal((hi - lo).prod(-1), tiles_per_gauss[0].long())


def test_reference_compositing_matches_brute_force():
    w, h = 20, 18  # two tiles wide: exercises tile borders and the partial last tile
    s = random_scene(40, seed=3, scale=0.12)
    s["opacities"][:10] = 0.99  # dense enough that some pixels terminate early
    view, K = camera(w, h)
    p = ref.project(s["means"], s["quats"], s["scales"], view, K, w, h)
    feats = torch.cat([s["colors"], p.depths[:, None]], -1)
    img, T = ref.composite_tiles(p.means2d, p.conics, s["opacities"], feats, p.depths, p.radii, w, h)
    img_bf, T_bf = brute_force_composite(p.means2d, p.conics, s["opacities"], feats, p.depths, p.radii, w, h)
    assert (T_bf < 0.01).any() and (T_bf > 0.99).any()
    torch.testing.assert_close(T, T_bf, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(img, img_bf, rtol=1e-5, atol=1e-5)


def test_rasterize_torch_outputs():
    s = random_scene(120, seed=4)
    view, K = camera()
    bg = torch.tensor([0.2, 0.5, 1.0])
    rgb, alpha, depth = rasterize(**s, viewmat=view, K=K, width=W, height=H, background=bg, impl="torch")
    assert rgb.shape == (H, W, 3) and alpha.shape == (H, W, 1) and depth.shape == (H, W, 1)
    rgb0, alpha0, depth0 = rasterize(**s, viewmat=view, K=K, width=W, height=H, impl="torch")
    torch.testing.assert_close(rgb, rgb0 + (1 - alpha0) * bg)
    # Expected depth lies between the nearest and farthest camera-space depth where covered.
    z = (s["means"] @ view[:3, :3].T + view[:3, 3])[:, 2]
    hit = alpha0[..., 0] > 0.05
    assert hit.any() and (~hit).any()
    assert (depth0[hit] > z.min() - 0.2).all() and (depth0[hit] < z.max() + 0.2).all()
    assert torch.all(depth0[alpha0 == 0] == 0)
