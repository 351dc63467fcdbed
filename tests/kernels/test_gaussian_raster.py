"""Gaussian rasterizer: torch reference vs gsplat's pure-torch code and a brute-force
per-pixel compositor; Triton kernels (interpreted on CPU, compiled on a GPU) vs the torch
reference; the kernels compiled for sm_90 without a GPU."""
from __future__ import annotations

import pytest
import torch

from hi3d.kernels import gaussians_ref as ref
from hi3d.kernels.gaussians import rasterize
from tests.kernels.gaussian_scenes import intrinsics, look_at_viewmat, random_scene
from tests.kernels.sm90_compile import compile_sm90

W, H = 40, 36


@pytest.fixture(scope="module")
def gsplat_impl():
    """gsplat's pure-torch code, the independent oracle; only the tests comparing against it
    skip without gsplat."""
    return pytest.importorskip("gsplat.cuda._torch_impl")


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


def test_projection_matches_gsplat(gsplat_impl):
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
def test_sh_matches_gsplat(gsplat_impl, degree):
    g = torch.Generator().manual_seed(degree)
    coeffs = torch.randn(64, (degree + 1) ** 2, 3, generator=g)
    dirs = torch.randn(64, 3, generator=g)
    expected = torch.clamp_min(gsplat_impl._spherical_harmonics(degree, dirs, coeffs) + 0.5, 0.0)
    torch.testing.assert_close(ref.eval_sh(coeffs, dirs), expected, rtol=1e-5, atol=1e-5)


def test_tile_binning_matches_gsplat_isect(gsplat_impl):
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


def _render_with_grads(scene, impl, device=torch.device("cpu"), width=W, height=H, background=None, seed=0):
    """Outputs and parameter gradients, on the CPU, of one render on ``device``."""
    params = {k: v.to(device, copy=True).requires_grad_(True) for k, v in scene.items()}
    view, K = camera(width, height)
    bg = None if background is None else background.to(device)
    out = rasterize(**params, viewmat=view.to(device), K=K.to(device), width=width, height=height,
                    background=bg, impl=impl)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g).to(device)).sum() for o in out)
    loss.backward()
    return [o.detach().cpu() for o in out], {k: v.grad.cpu() for k, v in params.items()}


# Forward: float32 sums of a few hundred terms; depth is divided by alpha, hence looser.
FWD_TOL = {"rgb": 1e-5, "alpha": 1e-5, "depth": 1e-4}
# Backward: different summation orders (atomics, cumsum vs. autograd); relative to the
# largest gradient of each parameter.
BWD_TOL = {"means": 2e-4, "quats": 2e-4, "scales": 2e-4, "opacities": 1e-4, "colors": 1e-5}


@pytest.mark.parametrize("sh_degree", [None, 3])
def test_triton_matches_reference(triton_device, sh_degree):
    s = random_scene(120, sh_degree=sh_degree, seed=5, scale=0.1)
    s["opacities"][:30] = 0.99  # some pixels terminate early
    s["means"][:4, 2] = 3.0  # behind the camera
    s["scales"][4:8] = 0.0  # degenerate: only the 0.3 px low-pass keeps them visible
    bg = torch.tensor([0.1, 0.2, 0.3])
    out_ref, grads_ref = _render_with_grads(s, "torch", background=bg)
    out_tri, grads_tri = _render_with_grads(s, "triton", triton_device, background=bg)
    for name, a, b in zip(FWD_TOL, out_tri, out_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=FWD_TOL[name], msg=name)
    for name, tol in BWD_TOL.items():
        ref_g = grads_ref[name]
        assert ref_g.abs().max() > 0, name
        torch.testing.assert_close(grads_tri[name], ref_g, rtol=0, atol=tol * ref_g.abs().max().item(), msg=name)
    assert torch.all(grads_tri["means"][:4] == 0)  # culled: no gradient


def test_triton_binning_matches_gsplat(gsplat_impl):
    from hi3d.kernels.gaussians_triton import bin_tiles

    s = random_scene(80, seed=6)
    view, K = camera()
    p = ref.project(s["means"], s["quats"], s["scales"], view, K, W, H)
    tw, th = (W + 15) // 16, (H + 15) // 16
    _, isect_ids, flat_ids = gsplat_impl._isect_tiles(p.means2d[None], p.radii[None], p.depths[None], 16, tw, th)
    offsets_gs = gsplat_impl._isect_offset_encode(isect_ids, 1, tw, th).flatten()
    offsets, ids = bin_tiles(p.means2d, p.radii, p.depths, W, H)
    assert torch.equal(offsets[:-1], offsets_gs) and offsets[-1] == len(flat_ids)
    assert torch.equal(ids, flat_ids.int())


def test_triton_empty_and_offscreen(triton_device):
    s = random_scene(20, seed=7)
    s["means"][:, 0] += 10.0  # everything off-screen: every tile is empty
    (rgb, alpha, depth), grads = _render_with_grads(s, "triton", triton_device,
                                                    background=torch.tensor([0.0, 1.0, 0.0]))
    assert torch.all(alpha == 0) and torch.all(depth == 0)
    assert torch.all(rgb == torch.tensor([0.0, 1.0, 0.0]))
    assert all(torch.all(g == 0) for g in grads.values())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(means=a["means"][:, :2]), "means must have shape"),
        (lambda a: a.update(quats=a["quats"][:-1]), "quats must have shape"),
        (lambda a: a.update(scales=a["scales"].double()), "scales must be float32"),
        (lambda a: a.update(opacities=a["opacities"][:, None]), "opacities must have shape"),
        (lambda a: a.update(colors=torch.zeros(len(a["means"]), 5, 3)), r"colors as SH"),
        (lambda a: a.update(viewmat=torch.eye(3)), "viewmat must have shape"),
        (lambda a: a.update(K=torch.zeros(3, 3)), "positive focal"),
        (lambda a: a.update(width=0), "width must be a positive int"),
        (lambda a: a.update(background=torch.zeros(4)), "background must have shape"),
        (lambda a: a.update(impl="cuda"), "impl must be one of"),
        (lambda a: a.update(impl="gsplat"), "needs CUDA tensors"),
    ],
)
def test_bad_inputs_name_the_argument(change, message):
    view, K = camera()
    args = dict(random_scene(10), viewmat=view, K=K, width=W, height=H, background=None, impl="torch")
    change(args)
    with pytest.raises((ValueError, TypeError), match=message):
        rasterize(**args)


def test_triton_kernels_compile_for_sm90(tmp_path):
    """Without a GPU, still lower every kernel to a Hopper cubin (catches what the
    interpreter accepts but the compiler does not: non-constexpr globals, scan layouts)."""
    raster = {"C": 4, "CP": 4, "TILE": 16, "BATCH": 16}
    index_types = {"offsets_ptr": "*i32", "ids_ptr": "*i32"}
    specs = {
        name: {"module": "hi3d.kernels.gaussians_triton", "kernel": name, "constexprs": constexprs,
               "types": types, "options": {"num_warps": 8}}
        for name, constexprs, types in [
            ("project_fwd_kernel", {"BLOCK": 128}, {"radii_ptr": "*i32"}),
            ("project_bwd_kernel", {"BLOCK": 128}, {"radii_ptr": "*i32"}),
            ("raster_fwd_kernel", raster, index_types),
            ("raster_bwd_kernel", raster, index_types),
        ]
    }
    for name, kernel in compile_sm90(specs, tmp_path).items():
        assert kernel["cubin_bytes"] > 0, name
        assert ".target sm_90" in kernel["ptx"] and f".entry {name}" in kernel["ptx"], name
