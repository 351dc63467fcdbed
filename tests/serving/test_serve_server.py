"""A real tritonserver (the nvidia-pytriton wheel's) serving the tiny repository on
127.0.0.1: results equal the in-process pipeline's, concurrent requests share UNet calls,
bad input is refused with INVALID_ARGUMENT and the server keeps serving, admin APIs need
the key, and a request the client gives up on does not stop the server.

One server for the whole module (starting ~11 python stubs costs most of the time).
Tolerance: the served views are uint8; they may differ from the in-process pipeline's by
one level where a float lands near a rounding boundary (the networks run in other
processes, so reductions may be ordered differently), never more."""
import io
import json
import struct
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hi3d.engine import images
from hi3d.engine.backends.torch_backend import load_modules, torch_networks
from hi3d.engine.config import tiny
from hi3d.engine.pipeline import GenerationParams, Hi3DPipeline
from hi3d.serving.client import Hi3DClient, Hi3DClientError
from hi3d.serving.launcher import (
    ADMIN_HEADER,
    TritonServer,
    free_ports,
    grpc_admin_headers,
)
from hi3d.serving.repository import (
    RepositoryOptions,
    build_repository,
    default_python_paths,
)
from hi3d.serving.server_install import _pytriton_root, prepare

pytestmark = pytest.mark.skipif(_pytriton_root() is None, reason="needs pip install --no-deps nvidia-pytriton==0.7.0")
tritonclient = pytest.importorskip("tritonclient.grpc")

INVALID = "StatusCode.INVALID_ARGUMENT"
MAX_IMAGE_BYTES = 1 << 20
STEPS = 2


def _png() -> bytes:
    img = Image.new("RGBA", (96, 64), (0, 0, 0, 0))
    img.paste((200, 40, 40, 255), (30, 10, 70, 55))
    img.paste((40, 90, 220, 160), (10, 30, 50, 60))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cache = Path.home() / ".cache" / "hi3d" / "triton"
    install = prepare(cache)
    repo = tmp_path_factory.mktemp("serving") / "repo"
    # A long batch window so the two stage-1 instances' UNet calls meet even on a busy CPU.
    opts = RepositoryOptions(preset="tiny", instances=(("stage2", 1),), batch_delay_us=1_000_000,
                             max_image_bytes=MAX_IMAGE_BYTES, python_paths=default_python_paths(install.numpy_dir))
    build_repository(repo, opts)
    with TritonServer(repo, install, free_ports(), key="test-admin-key") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with Hi3DClient(server.grpc_url, timeout_s=600) as c:
        yield c


@pytest.fixture(scope="module")
def reference():
    """The in-process pipeline on the same preprocessed input: the served result must equal it."""
    cfg = tiny()
    pipe = Hi3DPipeline(cfg, torch_networks(load_modules(cfg), torch.device("cpu"), torch.float32))
    rgb = images.on_white(images.decode_image(_png()))
    image1 = images.square_crop(rgb, cfg.stage1.resolution)
    image2 = images.square_crop(rgb, cfg.stage2.resolution)

    def u8(views):  # [F, 3, R, R] -> [F, R, R, 3] uint8
        return np.stack([images.to_uint8(v) for v in views])

    cache = {}

    def views(seed: int, elevation: float, stage2: bool = False):
        key = (seed, elevation, stage2)
        if key not in cache:
            p = GenerationParams(elevation=elevation, seed=seed, steps=STEPS)
            v1 = pipe.generate_stage1(image1, p)
            cache[key] = (u8(v1), u8(pipe.generate_stage2(image2, v1, p)) if stage2 else None)
        return cache[key]

    return views


def _assert_same_views(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1, f"max difference {diff.max()} levels"
    assert (diff > 0).mean() < 0.01  # off-by-one only at rounding boundaries
    assert want.std() > 5  # the comparison is not between two constant images


def test_end_to_end_matches_the_in_process_pipeline(client, reference):
    views = client.generate(_png(), elevation=10.0, seed=5, steps=STEPS)
    want1, want2 = reference(5, 10.0, stage2=True)
    assert views.stage2.shape == (16, 128, 128, 3)
    _assert_same_views(views.stage1, want1)
    _assert_same_views(views.stage2, want2)


def test_concurrent_requests_are_answered_and_share_unet_calls(server, client, reference):
    seeds = [11, 12, 13, 14]
    with ThreadPoolExecutor(len(seeds)) as pool:
        results = list(pool.map(lambda s: client.generate(_png(), 0.0, s, STEPS, stage1_only=True), seeds))
    for seed, views in zip(seeds, results):
        _assert_same_views(views.stage1, reference(seed, 0.0)[0])
    stats_client = tritonclient.InferenceServerClient(server.grpc_url)
    stats = stats_client.get_inference_statistics("unet1", headers=server.admin_headers, as_json=True)
    stats_client.close()
    model = stats["model_stats"][0]
    # One request sends its CFG pair (batch 2); a batch of 4 or more is two requests in one call.
    sizes = {int(b["batch_size"]) for b in model["batch_stats"]}
    assert max(sizes) > 2, f"UNet batch sizes seen: {sorted(sizes)}"
    assert int(model["execution_count"]) < int(model["inference_count"]) // 2


def _huge_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG header announcing 400 Mpx (the decoder must refuse it before decoding)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _raw_infer(server, **overrides):
    """One hi3d_stage1 request with any input replaced by (array, triton dtype)."""
    values = {"image": (np.array([_png()], dtype=np.object_), "BYTES"),
              "elevation": (np.array([0.0], np.float32), "FP32"),
              "seed": (np.array([1], np.int64), "INT64"),
              "steps": (np.array([1], np.int32), "INT32")}
    values.update(overrides)
    inputs = []
    for name, (arr, dtype) in values.items():
        inputs.append(tritonclient.InferInput(name, list(arr.shape), dtype))
        inputs[-1].set_data_from_numpy(arr)
    c = tritonclient.InferenceServerClient(server.grpc_url)
    try:
        return c.infer("hi3d_stage1", inputs, client_timeout=300)
    finally:
        c.close()


@pytest.mark.parametrize("case,kwargs,match", [
    ("empty image", dict(image=b""), "empty"),
    ("not an image", dict(image=b"GIF89a this is not an image at all"), "not a readable image"),
    ("huge image", dict(image=_huge_png(9000, 8000)), "9000x8000: more than"),
    ("decompression bomb", dict(image=_huge_png(20000, 20000)), "decompression bomb"),
    ("too many bytes", dict(image=b"\x89PNG" + bytes(MAX_IMAGE_BYTES)), "bytes: more than"),
    ("elevation out of range", dict(elevation=120.0), "elevation"),
    ("elevation NaN", dict(elevation=float("nan")), "elevation"),
    ("negative steps", dict(steps=-1), "steps"),
    ("too many steps", dict(steps=10_000), "steps"),
    ("negative seed", dict(seed=-5), "seed"),
])
def test_bad_values_are_invalid_argument(client, case, kwargs, match):
    kwargs = {"image": _png(), "elevation": 0.0, "seed": 1, "steps": 1, **kwargs}
    with pytest.raises(Hi3DClientError, match=match) as e:
        client.generate(**kwargs, stage1_only=True)
    assert str(e.value.status) == INVALID, case


@pytest.mark.parametrize("case,overrides,match", [
    ("seed as FP32", dict(seed=(np.array([1.0], np.float32), "FP32")), "data-type"),
    ("two elevations", dict(elevation=(np.array([0.0, 1.0], np.float32), "FP32")), "shape"),
    ("two images", dict(image=(np.array([_png(), _png()], dtype=np.object_), "BYTES")), "shape"),
])
def test_wrong_dtypes_and_shapes_are_invalid_argument(server, case, overrides, match):
    with pytest.raises(tritonclient.InferenceServerException, match=match) as e:
        _raw_infer(server, **overrides)
    assert str(e.value.status()) == INVALID, case


def test_still_serving_after_bad_input(client, reference):
    views = client.generate(_png(), elevation=0.0, seed=11, steps=STEPS, stage1_only=True)
    _assert_same_views(views.stage1, reference(11, 0.0)[0])


def test_admin_apis_need_the_key(server, client):
    c = tritonclient.InferenceServerClient(server.grpc_url)
    try:
        for call in (c.get_model_repository_index, lambda: c.load_model("hi3d"), lambda: c.unload_model("hi3d"),
                     lambda: c.get_inference_statistics("unet1"), lambda: c.get_model_config("hi3d")):
            with pytest.raises(tritonclient.InferenceServerException, match="hi3d-admin-key"):
                call()
        with pytest.raises(tritonclient.InferenceServerException, match="restricted"):
            c.get_model_repository_index(headers=grpc_admin_headers("wrong"))
        index = c.get_model_repository_index(headers=server.admin_headers, as_json=True)
        assert {m["name"] for m in index["models"]} >= {"hi3d", "unet1", "stage1"}
        assert c.is_model_ready("hi3d")  # health and metadata stay open
    finally:
        c.close()
    index = f"http://{server.http_url}/v2/repository/index"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(index, data=b"{}", method="POST"), timeout=30)
    authorised = urllib.request.Request(index, data=b"{}", method="POST", headers={ADMIN_HEADER: server.key})
    with urllib.request.urlopen(authorised, timeout=30) as r:
        assert "hi3d_stage1" in {m["name"] for m in json.loads(r.read())}
    assert client.generate(_png(), 0.0, 11, STEPS, stage1_only=True).stage1.shape == (16, 64, 64, 3)


def test_still_serving_after_a_client_gives_up(client, reference):
    """tritonserver 2.51 does not pass a gRPC deadline on to the models inside an ensemble,
    so the abandoned request runs on in one stage-1 instance; the other keeps serving."""
    with Hi3DClient(client.url, timeout_s=1.0) as impatient:
        with pytest.raises(Hi3DClientError) as e:
            impatient.generate(_png(), 0.0, 3, 20, stage1_only=True)  # far more work than 1 s
    assert "DEADLINE_EXCEEDED" in str(e.value.status)
    views = client.generate(_png(), elevation=0.0, seed=11, steps=STEPS, stage1_only=True)
    _assert_same_views(views.stage1, reference(11, 0.0)[0])
