import math

import pytest
import torch

from hi3d.engine.cameras import (
    HI3D_FOV_DEG,
    hi3d_cameras,
    interpolated_azimuths,
    look_at,
    orbit_cameras,
)


def _project(cams, i, x):  # world points [N, 3] -> pixels [N, 2], depth [N]
    cam = x @ cams.viewmats[i, :3, :3].T + cams.viewmats[i, :3, 3]
    uv = cam[:, :2] / cam[:, 2:] * cams.K[[0, 1], [0, 1]] + cams.K[:2, 2]
    return uv, cam[:, 2]


@pytest.mark.parametrize("elevation", [-10.0, 0.0, 30.0])
def test_orbit_positions(elevation):
    cams = hi3d_cameras(elevation, 64)
    c = cams.centers()
    assert len(cams) == 16
    assert torch.allclose(c.norm(dim=-1), torch.full((16,), 1.5), atol=1e-5)
    el = torch.rad2deg(torch.asin(c[:, 2] / 1.5))
    assert torch.allclose(el, torch.full((16,), elevation), atol=1e-3)
    az = torch.rad2deg(torch.atan2(c[:, 1], c[:, 0])) % 360
    assert torch.allclose(az, torch.arange(16) * 22.5, atol=1e-3)


def test_look_at_is_opencv():
    cams = hi3d_cameras(0.0, 64)
    for i in range(16):
        R = cams.viewmats[i, :3, :3]
        assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-5)
        assert torch.det(R) == pytest.approx(1.0, abs=1e-5)
    uv, z = _project(cams, 0, torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.3], [0.0, 0.3, 0.0]]))
    assert torch.allclose(uv[0], torch.tensor([32.0, 32.0]), atol=1e-4)  # target at the image centre
    assert z[0] == pytest.approx(1.5, abs=1e-5)
    assert uv[1, 1] < 32.0 and uv[1, 0] == pytest.approx(32.0, abs=1e-4)  # world up is image up
    assert uv[2, 0] > 32.0  # frame 0 looks along -x: +y appears on the right


def test_field_of_view():
    cams = hi3d_cameras(0.0, 128)
    half = math.degrees(math.atan(64.0 / cams.K[0, 0].item()))
    assert 2 * half == pytest.approx(HI3D_FOV_DEG, abs=1e-4)
    assert HI3D_FOV_DEG == pytest.approx(49.134, abs=1e-3)


def test_rays_reproject_to_their_pixels():
    cams = hi3d_cameras(20.0, 16)
    o, d = cams.rays(5)
    pts = (o + 0.7 * d).reshape(-1, 3)
    uv, _ = _project(cams, 5, pts)
    grid = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")[::-1], -1).reshape(-1, 2) + 0.5
    assert torch.allclose(uv, grid, atol=1e-4)
    assert torch.allclose(d.norm(dim=-1), torch.ones(16, 16), atol=1e-5)


def test_interpolated_views_lie_on_the_orbit_between_neighbours():
    az = interpolated_azimuths(16, 16)
    assert az == pytest.approx([22.5 * k + 11.25 for k in range(16)])
    cams = orbit_cameras(az, 15.0, 32)
    assert torch.allclose(cams.centers().norm(dim=-1), torch.full((16,), 1.5), atol=1e-5)
    assert torch.allclose(cams.centers()[:, 2], torch.full((16,), 1.5 * math.sin(math.radians(15.0))), atol=1e-5)
    odd = interpolated_azimuths(16, 5)
    assert len(odd) == len(set(odd)) == 5
    assert all(a % 22.5 != 0 for a in odd) and all(0 < a < 360 for a in odd)
    assert len(interpolated_azimuths(16, 40)) == 40
    assert interpolated_azimuths(16, 0) == []
    with pytest.raises(ValueError, match="interpolated"):
        interpolated_azimuths(16, -1)


def test_look_at_straight_down():
    M = look_at(torch.tensor([0.0, 0.0, 2.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(M[:3, :3] @ torch.tensor([0.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
