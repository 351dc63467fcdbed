"""Every bad-argument path of every command exits with code 2 and a message naming what is
wrong, and writes nothing: argparse's own errors and those the params dataclasses raise."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from hi3d.bench.latency import main as latency_main
from hi3d.cli import main as hi3d_main
from hi3d.export.build_engines import main as build_main

NO_CUDA = not torch.cuda.is_available()


def _exit_code(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse
        return e.code


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "object.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(path)
    return path


@pytest.fixture(scope="module")
def views_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("views")
    for i in range(16):
        Image.new("RGB", (32, 32), (255, 255, 255)).save(folder / f"{i:03d}.png")
    return folder


GENERATE = [
    (["--elevation", "120"], "elevation"),
    (["--elevation", "nan"], "elevation"),
    (["--steps", "0"], "steps"),
    (["--steps", "x"], "--steps"),
    (["--seed", "-1"], "seed"),
    (["--preset", "full"], "--weights"),
    (["--preset", "huge"], "--preset"),
    (["--weights", "/nonexistent/dir"], "weights"),
    (["--backend", "tflite"], "--backend"),
    (["--dtype", "fp8"], "--dtype"),
    (["--device", "tpu"], "--device"),
    (["--recon-preset", "huge"], "--recon-preset"),
] + ([(["--device", "cuda"], "CUDA")] if NO_CUDA else [])


@pytest.mark.parametrize("extra,match", GENERATE, ids=[" ".join(a) for a, _ in GENERATE])
def test_generate(image, tmp_path, capsys, extra, match):
    assert _exit_code(hi3d_main, ["generate", str(image), "--out", str(tmp_path / "out"), *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_generate_missing_image(tmp_path, capsys):
    assert hi3d_main(["generate", str(tmp_path / "missing.png"), "--out", str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err


RECONSTRUCT = [
    (["--out", "mesh.txt"], "--out"),
    (["--out", "m.glb", "--interp", "-1"], "interp"),
    (["--out", "m.glb", "--threads", "0"], "--threads"),
    (["--out", "m.glb", "--preset", "huge"], "--preset"),
    (["--out", "m.glb", "--elevation", "high"], "--elevation"),
    (["--out", "m.glb", "--texture-size", "8"], "texture-size"),
] + ([(["--out", "m.glb", "--preset", "gpu"], "CUDA")] if NO_CUDA else [])


@pytest.mark.parametrize("extra,match", RECONSTRUCT, ids=[" ".join(a) for a, _ in RECONSTRUCT])
def test_reconstruct(views_dir, tmp_path, capsys, extra, match):
    extra = [str(tmp_path / a) if a.startswith(("m.", "mesh.")) else a for a in extra]
    assert _exit_code(hi3d_main, ["reconstruct", str(views_dir), *extra]) == 2
    assert match in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_reconstruct_bad_views(tmp_path, capsys):
    assert hi3d_main(["reconstruct", str(tmp_path / "none"), "--out", str(tmp_path / "m.glb")]) == 2
    assert "views folder" in capsys.readouterr().err


@pytest.mark.parametrize("extra,match", [
    (["--weights", "/nonexistent"], "--image"),
    (["--image", "x.png"], "--weights"),
    (["--threads", "0"], "--threads"),
])
def test_demo(tmp_path, capsys, extra, match):
    assert _exit_code(hi3d_main, ["demo", "--out", str(tmp_path / "out"), *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


SERVE = [
    (["--instances", "stage1"], "MODEL=COUNT"),
    (["--instances", "unet9=2"], "unet9"),
    (["--gpus", "a,b"], "GPU ids"),
    (["--max-batch", "1"], "max_batch"),
    (["--preset", "full"], "--weights"),
    (["--backend", "onnxruntime", "--artifacts", "/nonexistent"], "ONNX export"),
    (["--backend", "onnxruntime", "--max-batch", "16"], "--max-batch"),
    (["--weights", "/nonexistent"], "weights"),
] + ([(["--backend", "tensorrt", "--kind", "gpu"], "TensorRT")] if NO_CUDA else [])


@pytest.mark.parametrize("extra,match", SERVE, ids=[" ".join(a) for a, _ in SERVE])
def test_serve_build_repo(tmp_path, capsys, extra, match):
    assert _exit_code(hi3d_main, ["serve", "build-repo", "--out", str(tmp_path / "repo"), *extra]) == 2
    assert match in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # not even a temporary folder is left


def test_serve_start_and_client(tmp_path, capsys):
    assert hi3d_main(["serve", "start", "--repo", str(tmp_path)]) == 2
    assert "not a model repository" in capsys.readouterr().err
    assert _exit_code(hi3d_main, ["serve", "start", "--repo", str(tmp_path), "--grpc-port", "x"]) == 2
    assert "--grpc-port" in capsys.readouterr().err
    assert hi3d_main(["client", str(tmp_path / "missing.png"), "--out", str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("extra,match", [
    (["--models", "unet9"], "unet9"),
    (["--device", "cudax"], "--device"),
    (["--weights", "/nonexistent"], "weights"),
    (["--precision", "int4"], "--precision"),
])
def test_build_engines(tmp_path, capsys, extra, match):
    assert _exit_code(build_main, ["--preset", "tiny", "--out", str(tmp_path / "build"), "--onnx-only", *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("extra,match", [
    (["--compare", "torch,tflite"], "tflite"),
    (["--compare", "torch,torch"], "--compare"),
    (["--steps", "0"], "steps"),
    (["--iters", "0"], "--iters"),
    (["--preset", "full"], "--weights"),
])
def test_bench_latency(capsys, extra, match):
    assert _exit_code(latency_main, ["--preset", "tiny", *extra]) == 2
    assert match in capsys.readouterr().err
