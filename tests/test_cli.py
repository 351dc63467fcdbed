"""`hi3d generate`: writes 16 PNGs per stage; bad input fails clearly and writes nothing."""
import subprocess
import sys

import pytest
from PIL import Image


def _hi3d(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hi3d.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def rgba_png(tmp_path_factory):
    p = tmp_path_factory.mktemp("in") / "object.png"
    img = Image.new("RGBA", (96, 64), (0, 0, 0, 0))
    img.paste((200, 40, 40, 255), (30, 10, 70, 55))
    img.save(p)
    return p


def test_generate_writes_views_and_contact_sheet(rgba_png, tmp_path):
    r = _hi3d("generate", rgba_png, "--out", tmp_path / "out", "--steps", "1", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "seeded random weights" in r.stderr  # says plainly that no weights were used
    for stage, size in (("stage1", 64), ("stage2", 128)):
        pngs = sorted((tmp_path / "out" / stage).glob("[0-9]*.png"))
        assert len(pngs) == 16
        assert Image.open(pngs[0]).size == (size, size)
        assert (tmp_path / "out" / stage / "contact_sheet.png").is_file()


def test_non_image_and_missing_files(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    r = _hi3d("generate", bad, "--out", tmp_path / "out")
    assert r.returncode == 2 and "not a readable image" in r.stderr
    r = _hi3d("generate", tmp_path / "missing.png", "--out", tmp_path / "out")
    assert r.returncode == 2 and "no such file" in r.stderr
    assert not (tmp_path / "out").exists()
