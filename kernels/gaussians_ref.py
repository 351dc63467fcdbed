"""Plain-torch reference for 3D Gaussian splatting (EWA projection + tile compositing).

Written for clarity first, then for CPU speed: it is the oracle for the Triton kernels'
values and gradients (torch autograd differentiates it) and the CPU renderer used by the
reconstruction. Conventions (shared with ``kernels.gaussians`` and with gsplat 1.5):

- camera: OpenCV (x right, y down, z forward), ``viewmat`` is world-to-camera,
  pixel ``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)``;
- projection: covariance ``R S S^T R^T`` -> camera -> EWA Jacobian (with 3DGS' 1.3x
  field-of-view clamp on the Jacobian only) -> plus ``EPS2D`` px^2 on the diagonal (low-pass);
  culled where depth <= ``NEAR_PLANE``, where the 2D determinant is not positive, or where
  the ``SIGMA_EXTENT``-sigma box misses the image (radius 0);
- compositing, front to back per pixel in depth order: ``alpha = min(ALPHA_MAX, o exp(-s))``,
  Gaussians with alpha < ``ALPHA_MIN`` are skipped, and a pixel stops *before* the Gaussian
  that would bring its transmittance to <= ``T_MIN``.

These constants and ``quat_to_rotmat`` are the rasterizer's only definitions of them: the
Triton kernels and the reconstruction import them from here.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

TILE = 16
NEAR_PLANE = 0.01
EPS2D = 0.3
SIGMA_EXTENT = 3.33
FRUSTUM_MARGIN = 0.3  # 3DGS clamps the Jacobian to a field of view 1.3x the image's
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
SH_C0 = 0.28209479177387814


class Projected(NamedTuple):
    means2d: Tensor  # [N, 2] pixels
    conics: Tensor  # [N, 3] upper triangle (a, b, c) of the inverse 2D covariance
    depths: Tensor  # [N] camera z
    radii: Tensor  # [N, 2] int32 half extents in pixels; 0 = culled


def quat_to_rotmat(quats: Tensor) -> Tensor:  # [N, 4] wxyz -> [N, 3, 3]
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def project(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
) -> Projected:
    M = quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3] = R S
    cov = M @ M.transpose(1, 2)
    Rv, tv = viewmat[:3, :3], viewmat[:3, 3]
    p = means @ Rv.T + tv  # [N, 3]
    cov_c = Rv @ cov @ Rv.T
    x, y, z = p.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # Far off-axis Gaussians get the Jacobian of a point on the 1.3x frustum border
    # (as 3DGS does), which keeps their splats from exploding.
    lim_x = FRUSTUM_MARGIN * 0.5 * width / fx
    lim_y = FRUSTUM_MARGIN * 0.5 * height / fy
    tx = z * torch.clamp(x / z, -(cx / fx + lim_x), (width - cx) / fx + lim_x)
    ty = z * torch.clamp(y / z, -(cy / fy + lim_y), (height - cy) / fy + lim_y)
    zeros = torch.zeros_like(z)
    J = torch.stack(
        [fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = J @ cov_c @ J.transpose(1, 2) + EPS2D * torch.eye(2, dtype=means.dtype, device=means.device)
    a, b, c = cov2d[:, 0, 0], 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]), cov2d[:, 1, 1]
    det = a * c - b * b
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    with torch.no_grad():
        radii = torch.stack([a, c], dim=-1).clamp_min(0).sqrt().mul(SIGMA_EXTENT).ceil()
        lo, hi = means2d - radii, means2d + radii
        visible = (
            (z > NEAR_PLANE) & (det > 0)
            & (hi[:, 0] > 0) & (lo[:, 0] < width) & (hi[:, 1] > 0) & (lo[:, 1] < height)
        )
        radii = torch.where(visible[:, None], radii, torch.zeros_like(radii)).int()
    return Projected(means2d, conics, z, radii)


def eval_sh(
    coeffs: Tensor,  # [N, K, 3], K = (deg + 1)^2 <= 16
    dirs: Tensor,  # [N, 3] (need not be unit)
) -> Tensor:  # [N, 3]
    """Real spherical harmonics as in 3DGS / gsplat, plus 3DGS' +0.5 offset, clamped >= 0."""
    k = coeffs.shape[1]
    x, y, z = F.normalize(dirs, dim=-1).unbind(-1)
    basis = [torch.full_like(x, SH_C0)]
    if k > 1:
        basis += [-0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x]
    if k > 4:
        xx, yy, zz = x * x, y * y, z * z
        basis += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.31539156525252005 * (2 * zz - xx - yy),
            -1.0925484305920792 * x * z,
            0.5462742152960396 * (xx - yy),
        ]
    if k > 9:
        basis += [
            -0.5900435899266435 * y * (3 * xx - yy),
            2.890611442640554 * x * y * z,
            -0.4570457994644658 * y * (4 * zz - xx - yy),
            0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
            -0.4570457994644658 * x * (4 * zz - xx - yy),
            1.445305721320277 * z * (xx - yy),
            -0.5900435899266435 * x * (xx - 3 * yy),
        ]
    basis = torch.stack(basis, dim=-1)  # [N, K]
    return torch.clamp_min((basis[:, :, None] * coeffs).sum(1) + 0.5, 0.0)


def colors_to_rgb(
    colors: Tensor,  # [N, 3] RGB or [N, K, 3] SH
    means: Tensor,  # [N, 3]
    viewmat: Tensor,  # [4, 4]
) -> Tensor:  # [N, 3]
    if colors.dim() == 2:
        return colors
    campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
    return eval_sh(colors, means - campos)


def tile_bounds(means2d: Tensor, radii: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """Inclusive-exclusive tile ranges [N, 2] each (x, y) covered by each Gaussian's box."""
    tiles = torch.tensor([(width + TILE - 1) // TILE, (height + TILE - 1) // TILE], device=means2d.device)
    m, r = means2d.detach(), radii.float()
    lo = torch.minimum(torch.floor((m - r) / TILE).int().clamp_min(0), tiles)
    hi = torch.minimum(torch.ceil((m + r) / TILE).int().clamp_min(0), tiles)
    empty = (radii <= 0).any(-1, keepdim=True)
    return lo, torch.where(empty, lo, hi)


def composite_tiles(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    feats: Tensor,  # [N, C]
    depths: Tensor,  # [N]
    radii: Tensor,  # [N, 2]
    width: int,
    height: int,
    max_chunk: int = 1 << 22,
) -> tuple[Tensor, Tensor]:  # features [H, W, C] (no background), transmittance [H, W]
    """Front-to-back alpha compositing, vectorised over (tiles in a chunk) x Gaussians x pixels.

    Tiles are grouped by how many Gaussians touch them so padding stays small, and each group
    holds at most ``max_chunk`` (tile, Gaussian, pixel) triples.
    """
    n, ch = feats.shape
    tw, th = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    order = torch.argsort(depths.detach())  # depth order, so per-tile lists come out sorted
    lo, hi = tile_bounds(means2d[order], radii[order], width, height)
    tx = torch.arange(tw, device=means2d.device)
    ty = torch.arange(th, device=means2d.device)
    in_x = (tx[:, None] >= lo[None, :, 0]) & (tx[:, None] < hi[None, :, 0])  # [tw, N]
    in_y = (ty[:, None] >= lo[None, :, 1]) & (ty[:, None] < hi[None, :, 1])  # [th, N]
    hits = (in_y[:, None, :] & in_x[None, :, :]).reshape(th * tw, n)  # [tiles, N]
    counts = hits.sum(1)

    # Pixel centres of every tile: [tiles, 256, 2]
    py, px = torch.meshgrid(torch.arange(TILE), torch.arange(TILE), indexing="ij")
    local = torch.stack([px.flatten(), py.flatten()], -1).to(means2d)
    origin = torch.stack(torch.meshgrid(ty, tx, indexing="ij")[::-1], -1).reshape(-1, 1, 2) * TILE
    centres = origin.to(means2d) + local + 0.5

    out_feat = means2d.new_zeros(th * tw, TILE * TILE, ch)
    out_T = means2d.new_ones(th * tw, TILE * TILE)
    by_count = torch.argsort(counts, descending=True)
    start = 0
    while start < len(by_count) and counts[by_count[start]] > 0:
        gmax = int(counts[by_count[start]])
        stop = start + max(1, max_chunk // (gmax * TILE * TILE))
        tiles = by_count[start:stop]
        tiles = tiles[counts[tiles] > 0]
        # Column of each hit inside its tile's padded list; padding points at Gaussian n.
        h = hits[tiles]
        col = torch.cumsum(h, 1) - 1
        ids = torch.full((len(tiles), gmax), n, dtype=torch.long, device=means2d.device)
        rows = torch.arange(len(tiles), device=means2d.device)[:, None].expand_as(h)
        ids[rows[h], col[h]] = order.expand_as(h)[h]
        f, t = _composite_chunk(means2d, conics, opacities, feats, ids, centres[tiles])
        out_feat = out_feat.index_copy(0, tiles, f)
        out_T = out_T.index_copy(0, tiles, t)
        start = stop
    return _untile(out_feat, th, tw, height, width), _untile(out_T[..., None], th, tw, height, width)[..., 0]


def _composite_chunk(
    means2d: Tensor, conics: Tensor, opacities: Tensor, feats: Tensor,
    ids: Tensor,  # [T, G] depth-sorted Gaussian ids per tile, padded with N
    centres: Tensor,  # [T, P, 2]
) -> tuple[Tensor, Tensor]:  # [T, P, C], [T, P]
    pad = lambda v: torch.cat([v, v.new_zeros((1,) + v.shape[1:])])  # noqa: E731
    m, cn, o, c = pad(means2d)[ids], pad(conics)[ids], pad(opacities)[ids], pad(feats)[ids]
    d = m[:, :, None, :] - centres[:, None, :, :]  # [T, G, P, 2]
    dx, dy = d[..., 0], d[..., 1]
    sigma = 0.5 * (cn[..., 0, None] * dx * dx + cn[..., 2, None] * dy * dy) + cn[..., 1, None] * dx * dy
    alpha = torch.clamp_max(o[..., None] * torch.exp(-sigma), ALPHA_MAX)  # [T, G, P]
    used = (sigma >= 0) & (alpha >= ALPHA_MIN)
    alpha = torch.where(used, alpha, torch.zeros_like(alpha))
    T_incl = torch.cumprod(1 - alpha, dim=1)
    # Transmittance only falls, so "stop before T <= 1e-4" keeps a prefix of the list.
    used = used & (T_incl.detach() > T_MIN)
    T_excl = torch.cat([torch.ones_like(T_incl[:, :1]), T_incl[:, :-1]], dim=1)
    w = torch.where(used, alpha * T_excl, torch.zeros_like(alpha))
    feat = torch.einsum("tgp,tgc->tpc", w, c)
    T_final = torch.where(used, 1 - alpha, torch.ones_like(alpha)).prod(dim=1)
    return feat, T_final


def _untile(x: Tensor, th: int, tw: int, height: int, width: int) -> Tensor:  # [tiles, P, C] -> [H, W, C]
    c = x.shape[-1]
    img = x.reshape(th, tw, TILE, TILE, c).permute(0, 2, 1, 3, 4).reshape(th * TILE, tw * TILE, c)
    return img[:height, :width]


def rasterize_ref(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, 3] or [N, K, 3]
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    background: Tensor | None = None,  # [3]
) -> tuple[Tensor, Tensor, Tensor]:  # rgb [H, W, 3], alpha [H, W, 1], depth [H, W, 1]
    proj = project(means, quats, scales, viewmat, K, width, height)
    feats = torch.cat([colors_to_rgb(colors, means, viewmat), proj.depths[:, None]], dim=-1)
    img, T = composite_tiles(
        proj.means2d, proj.conics, opacities, feats, proj.depths, proj.radii, width, height
    )
    return finish(img, T, background)


def finish(
    img: Tensor,  # [H, W, 4] composited rgb + depth, no background
    T: Tensor,  # [H, W] final transmittance
    background: Tensor | None,  # [3]
) -> tuple[Tensor, Tensor, Tensor]:
    alpha = (1 - T)[..., None]
    rgb = img[..., :3]
    if background is not None:
        rgb = rgb + T[..., None] * background
    depth = img[..., 3:] / alpha.clamp_min(1e-10)
    return rgb, alpha, depth
