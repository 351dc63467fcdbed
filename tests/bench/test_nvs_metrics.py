"""Novel-view metrics against hand-computed values and an independent SSIM (scikit-image)."""
import json
import math

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from skimage.metrics import structural_similarity

from hi3d.bench import nvs_metrics
from hi3d.engine.cameras import HI3D_RADIUS
from hi3d.engine.image_metrics import LPIPS, SSIM_K1, load_lpips, lpips_distance, psnr, ssim


def _views(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(images):
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(folder / f"{k:03d}.png")


def test_psnr_of_known_noise():
    rng = np.random.default_rng(0)
    gt = np.full((32, 32, 3), 0.5)
    noisy = gt + 0.1 * rng.choice([-1.0, 1.0], gt.shape)  # every pixel off by exactly 0.1: MSE 0.01
    assert psnr(noisy, gt) == pytest.approx(20.0, abs=1e-9)


def test_ssim_of_identical_and_constant_images():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(24, 24, 3))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    # constant images: no variance, only the luminance term (2 a b + C1) / (a^2 + b^2 + C1) is left
    a, b, c1 = 0.3, 0.7, SSIM_K1**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((16, 16, 3), a), np.full((16, 16, 3), b)) == pytest.approx(expected, rel=1e-9)


def test_ssim_of_shifted_images_matches_scikit_image():
    rng = np.random.default_rng(2)
    base = np.kron(rng.uniform(size=(8, 8, 3)), np.ones((4, 4, 1)))  # 32 x 32 blocks
    shifted = np.roll(base, 3, axis=1)
    ref = structural_similarity(shifted, base, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=1.0, channel_axis=2)
    assert ssim(shifted, base) == pytest.approx(ref, abs=1e-6)
    assert ssim(shifted, base) < 0.9  # a shift is a real difference


def _lpips_state(net: str, seed: int = 0) -> dict:
    """Random weights under the lpips package's key names (net.sliceK.I.*, linK.model.1.weight)."""
    torch.manual_seed(seed)
    model = LPIPS(net)
    taps = model.taps
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("features."):
            index = int(key.split(".")[1])
            slice_no = next(s for s, t in enumerate(taps) if index <= t) + 1
            state[f"net.slice{slice_no}.{key.split('.', 1)[1]}"] = value
        elif key.startswith("lins."):
            state[f"lin{key.split('.')[1]}.model.1.weight"] = value.abs()
    return state


def test_lpips_loads_an_lpips_state_dict(tmp_path):
    path = tmp_path / "alex.pth"
    torch.save(_lpips_state("alex"), path)
    model = load_lpips(path)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(size=(64, 64, 3)), rng.uniform(size=(64, 64, 3))
    assert lpips_distance(model, x, x) == pytest.approx(0.0, abs=1e-7)
    assert lpips_distance(model, x, y) > 0.0
    assert lpips_distance(model, x, y) == pytest.approx(lpips_distance(model, y, x), rel=1e-5)
    bad = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(1)}, bad)
    assert nvs_metrics.main(["--pred", str(tmp_path), "--gt", str(tmp_path), "--lpips-weights", str(bad)]) == 2


def test_cli_writes_json_and_table(tmp_path, capsys):
    rng = np.random.default_rng(4)
    gt = [np.full((16, 16, 3), 0.5) for _ in range(16)]
    pred = [g + 0.1 * rng.choice([-1.0, 1.0], g.shape) for g in gt]  # quantised to 8 bits: 0.5 -> 128/255
    _views(tmp_path / "gt" / "stage1", gt)
    _views(tmp_path / "pred" / "stage1", pred)
    out = tmp_path / "m.json"
    assert nvs_metrics.main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    q = lambda v: np.round(v * 255) / 255  # noqa: E731  (what the PNG files hold)
    expected = np.mean([psnr(q(p), q(g)) for p, g in zip(pred, gt)])
    assert result["psnr"] == pytest.approx(expected, abs=1e-4)
    assert result["lpips"] is None and len(result["views"]) == 16
    assert "stage1" in capsys.readouterr().out


@pytest.mark.parametrize("argv, named", [
    (["--gt", "X"], "--pred"),
    (["--gt", "X", "--render-gt", "missing.glb", "--elevation", "10"], "--render-gt"),
    (["--gt", "X", "--render-gt", "missing.glb"], "--elevation"),
    (["--gt", "X", "--pred", "Y", "--elevation", "10"], "--elevation"),
    (["--gt", "X", "--pred", "Y"], "--pred"),
    (["--gt", "X", "--pred", "Y", "--size", "4"], "--size"),
])
def test_bad_arguments_exit_2_naming_the_argument(tmp_path, capsys, argv, named):
    argv = [str(tmp_path / a) if a in ("X", "Y", "missing.glb") else a for a in argv]
    assert nvs_metrics.main(argv) == 2
    assert named in capsys.readouterr().err


def test_render_gt_sphere_silhouette_matches_its_projection(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=2.0)  # normalised to radius 0.5
    sphere.visual.vertex_colors = [200, 60, 60, 255]
    mesh = tmp_path / "sphere.obj"
    sphere.export(mesh)
    assert nvs_metrics.main(["--render-gt", str(mesh), "--elevation", "20", "--gt", str(tmp_path / "gt"),
                             "--preset", "tiny"]) == 0
    for stage, size in (("stage1", 64), ("stage2", 128)):
        alpha = np.asarray(Image.open(tmp_path / "gt" / stage / "005.png"))[..., 3] / 255.0
        f = size * 35.0 / 32.0  # 35 mm lens on a 32 mm sensor
        radius_px = f * math.tan(math.asin(0.5 / HI3D_RADIUS))  # the silhouette of a sphere on the axis
        assert alpha.sum() == pytest.approx(math.pi * radius_px**2, rel=0.02)
