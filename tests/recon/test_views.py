"""Input views: loading, validation and bad input (clear errors, nothing written)."""

import numpy as np
import pytest
import torch
from PIL import Image

from hi3d.cli import main as hi3d_main
from hi3d.engine.recon.views import check_views, foreground_masks, load_views


def _write_views(folder, rgba, n=16):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(np.round(rgba[i % len(rgba)] * 255).astype(np.uint8), "RGBA").save(folder / f"{i:03d}.png")


def test_load_composites_rgba_on_white(tmp_path, sphere_views):
    transparent = sphere_views.numpy().copy()
    transparent[..., :3] = np.where(transparent[..., 3:] > 0, transparent[..., :3], 0.0)  # black where alpha = 0
    _write_views(tmp_path / "v", transparent)
    views = load_views(tmp_path / "v")
    assert views.shape == (16, 3, 64, 64)
    expected = torch.from_numpy(transparent[..., :3] * transparent[..., 3:] + 1 - transparent[..., 3:])
    assert torch.allclose(views, expected.permute(0, 3, 1, 2), atol=1 / 255 + 1e-6)
    check_views(views)


def test_views_are_read_in_orbit_order_and_other_files_ignored(tmp_path, sphere_views):
    folder = tmp_path / "v"
    folder.mkdir()
    for i in range(16):  # unpadded names: a name sort would read 0, 1, 10, 11, ...
        Image.new("RGB", (32, 32), (i * 10, 0, 0)).save(folder / f"{i}.png")
    Image.new("RGB", (64, 64)).save(folder / "contact_sheet.png")  # written by `hi3d generate`
    reds = (load_views(folder)[:, 0, 0, 0] * 255).round().tolist()
    assert reds == [i * 10 for i in range(16)]
    (folder / "7.png").unlink()
    with pytest.raises(ValueError, match="expected 16 views named 0..15"):
        load_views(folder)


def test_foreground_masks_match_alpha_and_keep_enclosed_white(sphere_views):
    views = sphere_views[..., :3].permute(0, 3, 1, 2).clone()
    views[:, :, 30:34, 30:34] = 1.0  # a white patch inside the object is still object
    masks = foreground_masks(views)
    alpha = sphere_views[..., 3]
    # edge pixels count as object once a quarter covered (2x2 supersampled renders)
    assert ((masks > 0.5) == (alpha > 0.2)).float().mean() > 0.995
    assert ((masks > 0.5) == (alpha > 0.5)).float().mean() > 0.98
    assert masks[:, 30:34, 30:34].min() == 1.0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda v: v[:8], "needs 16 orbit views"),
        (lambda v: v[:, :, :, :60], "square"),
        (lambda v: v * 2 - 1, r"\(views \+ 1\) / 2"),
        (lambda v: v * 0.5, "white background"),
        (lambda v: v[:, :1], r"\[V, 3, H, W\]"),
    ],
)
def test_check_views_rejects(sphere_views, make, message):
    views = sphere_views[..., :3].permute(0, 3, 1, 2)
    with pytest.raises(ValueError, match=message):
        check_views(make(views))


@pytest.mark.parametrize("problem", ["too_few", "not_an_image", "sizes", "background"])
def test_cli_bad_folder_errors_and_keeps_output(tmp_path, capsys, sphere_views, problem):
    folder = tmp_path / "views"
    rgba = sphere_views.numpy()
    if problem == "too_few":
        _write_views(folder, rgba, n=15)
        message = "expected 16 views named"
    elif problem == "not_an_image":
        _write_views(folder, rgba, n=15)
        (folder / "015.png").write_text("not a png")
        message = "015.png is not a readable image"
    elif problem == "sizes":
        _write_views(folder, rgba)
        Image.new("RGB", (32, 32), "white").save(folder / "007.png")
        message = "different sizes"
    else:
        dark = rgba.copy()
        dark[..., :3] *= 0.3
        dark[..., 3] = 1.0
        _write_views(folder, dark)
        message = "view 0 does not have a white background"
    out = tmp_path / "mesh.glb"
    out.write_bytes(b"previous result")
    assert hi3d_main(["reconstruct", str(folder), "--out", str(out), "--preset", "test"]) == 2
    assert message in capsys.readouterr().err
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.glb", "views"]
