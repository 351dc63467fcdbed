"""The model.py files in this process, against a small fake of `triton_python_backend_utils`:
BLS calls go to the other models' TritonPythonModel instances (the real network models on
the tiny preset's seeded weights), so the streamed views can be compared with the in-process
pipeline, and cancellation can be counted in UNet calls."""
import importlib
import json
import sys
import types

import numpy as np
import pytest
import torch

from hi3d.engine import images
from hi3d.engine.backends.torch_backend import load_modules, torch_networks
from hi3d.engine.cameras import hi3d_cameras
from hi3d.engine.config import tiny
from hi3d.engine.pipeline import GenerationParams, Hi3DPipeline
from hi3d.engine.recon.mesh_render import render_mesh
from hi3d.engine.recon.shapes import SHAPES
from hi3d.serving.networks import NETWORKS
from tests.serving.requests import png

FINAL = 1


class Tensor:
    def __init__(self, name: str, arr):
        self._name, self._arr = name, np.asarray(arr)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._arr

    @staticmethod
    def from_dlpack(name: str, capsule) -> "Tensor":
        return Tensor(name, torch.utils.dlpack.from_dlpack(capsule).numpy())

    def to_dlpack(self):
        return torch.utils.dlpack.to_dlpack(torch.from_numpy(np.ascontiguousarray(self._arr)))


class TritonError:
    INTERNAL, INVALID_ARG, CANCELLED, UNAVAILABLE = "INTERNAL", "INVALID_ARG", "CANCELLED", "UNAVAILABLE"

    def __init__(self, message: str, code: str = "INTERNAL"):
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> str:
        return self._code


class InferenceResponse:
    def __init__(self, output_tensors=(), error=None):
        self.outputs, self._error = {t.name(): t for t in output_tensors}, error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self):
        return self._error


class Sender:
    """Records what a decoupled model sends, as (output names or error code, flags)."""

    def __init__(self, cancelled):
        self.sent, self._cancelled = [], cancelled

    def send(self, response=None, flags=0):
        assert not (self.sent and self.sent[-1][1] == FINAL), "sent after the final flag"
        self.sent.append((response, flags))

    def is_cancelled(self) -> bool:
        return self._cancelled()


class Request:
    def __init__(self, inputs: dict, cancelled=lambda: False):
        self.inputs, self.is_cancelled = inputs, cancelled
        self.sender = Sender(cancelled)

    def get_response_sender(self) -> Sender:
        return self.sender


class Server:
    """The models BLS calls reach, by name; counts the calls."""

    models: dict = {}
    calls: dict = {}
    memory: list = []  # (model, memory type, device id) each BLS request asked its outputs in


class PreferredMemory:
    def __init__(self, memory_type: str, device_id: int = 0):
        self.memory_type, self.device_id = memory_type, device_id


class InferenceRequest:
    def __init__(self, model_name: str, requested_output_names: list, inputs: list, preferred_memory=None):
        self.model, self.inputs = model_name, {t.name(): t for t in inputs}
        self.memory = preferred_memory

    def exec(self) -> InferenceResponse:
        Server.calls[self.model] = Server.calls.get(self.model, 0) + 1
        Server.memory.append((self.model, self.memory.memory_type, self.memory.device_id))
        response = Server.models[self.model].execute([Request(self.inputs)])[0]
        if response.has_error():  # as the real python backend does: the message comes back, the code does not
            return InferenceResponse(error=TritonError(response.error().message()))
        return response


class Logger:
    lines: list = []

    @staticmethod
    def log_info(message: str) -> None:
        Logger.lines.append(message)


def _fake_pb_utils() -> types.ModuleType:
    m = types.ModuleType("triton_python_backend_utils")
    m.Tensor, m.TritonError, m.InferenceResponse, m.InferenceRequest, m.Logger = (
        Tensor, TritonError, InferenceResponse, InferenceRequest, Logger)
    m.TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL
    m.PreferredMemory, m.TRITONSERVER_MEMORY_CPU, m.TRITONSERVER_MEMORY_GPU = PreferredMemory, "CPU", "GPU"
    m.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    m.get_output_tensor_by_name = lambda response, name: response.outputs.get(name)
    return m


def _args(params: dict, repo: str = "", kind: str = "CPU") -> dict:
    config = {"parameters": {k: {"string_value": v} for k, v in params.items()}}
    return {"model_config": json.dumps(config), "model_repository": repo, "model_version": "1",
            "model_instance_kind": kind}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The model.py modules imported against the fake, and a fake server of the tiny preset."""
    saved = {k: v for k, v in sys.modules.items() if k.startswith("hi3d.serving.") and k != "hi3d.serving.networks"}
    for k in saved:
        del sys.modules[k]
    sys.modules["triton_python_backend_utils"] = _fake_pb_utils()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine, intra-op threads mostly wait for each other
    try:
        mods = {name: importlib.import_module(f"hi3d.serving.models.{name}")
                for name in ("preprocess", "network", "sampler", "stream", "reconstruct", "t2i")}
        cfg, root = tiny(), tmp_path_factory.mktemp("weights")
        for name, module in load_modules(cfg).items():
            (root / name / "1").mkdir(parents=True)
            torch.save(module.state_dict(), root / name / "1" / "weights.pt")
        Server.models = {"preprocess": mods["preprocess"].TritonPythonModel()}
        Server.models["preprocess"].initialize(_args({"preset": "tiny", "max_image_bytes": str(1 << 20)}))
        for name in NETWORKS:
            Server.models[name] = mods["network"].TritonPythonModel()
            Server.models[name].initialize(_args({"preset": "tiny", "network": name, "gpu_dtype": "fp32",
                                                  "backend": "torch"}, str(root / name)))
        Server.models["t2i"] = mods["t2i"].TritonPythonModel()
        Server.models["t2i"].initialize(_args({"t2i": "tiny", "t2i_steps": "2", "guidance": "7.5",
                                               "gpu_dtype": "fp32"}, str(root / "t2i")))
        yield mods
    finally:
        torch.set_num_threads(threads)
        del sys.modules["triton_python_backend_utils"]
        for k in [k for k in sys.modules if k.startswith("hi3d.serving.") and k != "hi3d.serving.networks"]:
            del sys.modules[k]
        sys.modules.update(saved)


def _stream_request(steps: int, want_mesh: bool = False, cancelled=lambda: False, drop: str = "") -> Request:
    inputs = {"image": Tensor("image", np.array([png()], dtype=np.object_)),
              "elevation": Tensor("elevation", np.array([10.0], np.float32)),
              "seed": Tensor("seed", np.array([5], np.int64)), "steps": Tensor("steps", np.array([steps], np.int32)),
              "want_mesh": Tensor("want_mesh", np.array([want_mesh]))}
    return Request({k: v for k, v in inputs.items() if k != drop}, cancelled)


def _stream_model(models):
    model = models["stream"].TritonPythonModel()
    model.initialize(_args({"preset": "tiny", "recon_preset": "test"}))
    return model


def _names(sent) -> list:
    return [("error", r.error().code()) if r is not None and r.has_error() else
            (tuple(r.outputs) if r is not None else "final") for r, _ in sent]


def test_stream_sends_progress_views_in_order_equal_to_the_pipeline(models):
    request = _stream_request(steps=2)
    assert _stream_model(models).execute([request]) is None  # decoupled: everything goes through the sender
    sent = request.sender.sent
    names = _names(sent)
    assert names[-1] == "final" and sent[-1][1] == FINAL and all(f == 0 for _, f in sent[:-1])
    assert names.index(("stage1_views",)) < names.index(("views",)) == len(names) - 2
    events = [r.outputs["event"].as_numpy()[0].decode() for r, _ in sent if r is not None and "event" in r.outputs]
    assert events[-1] == "stage2 2/2" and "stage1 2/2" in events
    progress = [float(r.outputs["progress"].as_numpy()[0]) for r, _ in sent if r is not None and "progress" in r.outputs]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)

    cfg = tiny()  # the reference: the in-process pipeline on the same preprocessed image
    pipe = Hi3DPipeline(cfg, torch_networks(load_modules(cfg), torch.device("cpu"), torch.float32))
    rgb = images.on_white(images.decode_image(png()))
    p = GenerationParams(elevation=10.0, seed=5, steps=2)
    v1 = pipe.generate_stage1(images.square_crop(rgb, cfg.stage1.resolution), p)
    v2 = pipe.generate_stage2(images.square_crop(rgb, cfg.stage2.resolution), v1, p)
    for name, want in (("stage1_views", v1), ("views", v2)):
        got = next(r.outputs[name].as_numpy() for r, _ in sent if r is not None and name in r.outputs)
        want = np.stack([images.to_uint8(v) for v in want])
        assert got.shape == want.shape and np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_a_cancelled_stream_stops_after_the_step_it_is_in(models):
    checks = []

    def cancelled() -> bool:  # the client cancels while step 3 runs
        checks.append(1)
        return len(checks) >= 5  # after steps 1, 2: request + sender checked once each

    Server.calls.clear()
    Logger.lines.clear()
    request = _stream_request(steps=50, cancelled=cancelled)
    _stream_model(models).execute([request])
    assert Server.calls["unet1"] == 3 and "unet2" not in Server.calls
    assert _names(request.sender.sent)[-1] == "final"
    assert ("views",) not in _names(request.sender.sent)
    assert Logger.lines == ["hi3d_stream: request cancelled at stage1 3/50"]


def test_bls_requests_ask_for_outputs_where_the_instance_runs(models):
    """A CPU instance asks every network for host memory; a GPU instance for its own device's
    (the stage models then get device tensors by DLPack: no host copy per UNet step)."""
    Server.memory.clear()
    _stream_model(models).execute([_stream_request(steps=1)])
    assert {m for _, m, _ in Server.memory} == {"CPU"} and {n for n, _, _ in Server.memory} >= {"unet1", "unet2"}
    bls = sys.modules["hi3d.serving.bls"]
    Server.memory.clear()
    x = torch.rand(1, 3, 28, 28) * 2 - 1
    bls.exec_request("clip", [bls.to_pb("pixels", x)], ("image_embeds",), torch.device("cuda", 1))
    assert Server.memory == [("clip", "GPU", 1)]


@pytest.mark.parametrize("drop,match", [("want_mesh", "want_mesh"), ("seed", "seed")])
def test_stream_refuses_a_missing_input(models, drop, match):
    request = _stream_request(steps=1, drop=drop)
    _stream_model(models).execute([request])
    (response, flags), = request.sender.sent
    assert response.error().code() == TritonError.INVALID_ARG and match in response.error().message()
    assert flags == FINAL


def test_stream_passes_on_what_preprocess_refused_as_invalid_input(models):
    """The stream learns of the bad image from its BLS call to preprocess, whose error code the
    backend drops: it must still answer INVALID_ARG, naming the image once."""
    request = _stream_request(steps=1)
    request.inputs["image"] = Tensor("image", np.array([b"not an image"], dtype=np.object_))
    _stream_model(models).execute([request])
    (response, flags), = request.sender.sent
    error = response.error()
    assert error.code() == TritonError.INVALID_ARG and flags == FINAL
    assert error.message().startswith("invalid input: image is not a readable image")


@pytest.mark.parametrize("kind,code,status", [
    ("InvalidInput", "INVALID_ARG", "StatusCode.INVALID_ARGUMENT"),
    ("Unavailable", "UNAVAILABLE", "StatusCode.UNAVAILABLE"),
    ("RuntimeError", "INTERNAL", "StatusCode.INTERNAL"),
])
def test_every_error_marks_its_status_at_the_start_of_its_message(models, kind, code, status):
    """A stream's error reaches the client as a message alone: the client reads the status from it."""
    from hi3d.serving.client import _client_error
    from hi3d.serving.protocol import status_of

    bls = sys.modules["hi3d.serving.bls"]
    error = bls.error_response({"InvalidInput": bls.InvalidInput, "Unavailable": bls.Unavailable,
                                "RuntimeError": RuntimeError}[kind]("what went wrong")).error()
    assert error.code() == getattr(TritonError, code) and status_of(error.message()) == status

    class StreamError(Exception):  # what tritonclient's stream callback is given: no status
        def status(self):
            return None

        def message(self):
            return error.message()

    assert _client_error("hi3d_stream", "127.0.0.1:1", StreamError()).status == status
    assert status_of("[request id: <id_unknown>] unexpected shape for input 'want_mesh'") is None  # tritonserver's own


def _sphere_views() -> np.ndarray:
    gt = SHAPES["sphere"].mesh(64)
    rgba = render_mesh(gt.vertices, gt.faces, gt.colors, hi3d_cameras(10.0, 32))
    return np.round((rgba[..., :3] * rgba[..., 3:] + 1.0 - rgba[..., 3:]) * 255).astype(np.uint8)


def _recon_request(views: np.ndarray, cancelled=lambda: False) -> Request:
    return Request({"views": Tensor("views", views), "elevation": Tensor("elevation", np.array([10.0], np.float32)),
                    "seed": Tensor("seed", np.array([0], np.int64))}, cancelled)


@pytest.mark.parametrize("views,code,match", [
    (np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), "INVALID_ARG", "no surface found"),
    (np.full((16, 32, 24, 3), 255, np.uint8), "INVALID_ARG", "square"),
    (np.full((12, 32, 32, 3), 255, np.uint8), "INVALID_ARG", "16"),
    (_sphere_views(), "CANCELLED", "cancelled"),
])
def test_reconstruct_refuses_or_stops(models, views, code, match):
    model = models["reconstruct"].TritonPythonModel()
    model.initialize(_args({"recon_preset": "test"}))
    (response,) = model.execute([_recon_request(views, cancelled=lambda: True)])
    assert response.error().code() == code and match in response.error().message()


# --- text: the t2i model and a prompt on the stream ------------------------------------------
def _t2i_request(prompt, cancelled=lambda: False) -> Request:
    inputs = {"seed": Tensor("seed", np.array([7], np.int64))}
    if prompt is not None:
        inputs["prompt"] = Tensor("prompt", np.array([prompt], dtype=np.object_))
    return Request(inputs, cancelled)


def test_t2i_returns_the_engine_image_as_png(models):
    from hi3d.engine.text_to_image import TextToImageParams, generate_image, tiny_pipeline

    (response,) = Server.models["t2i"].execute([_t2i_request("a red mug".encode())])
    got = np.asarray(images.decode_image(response.outputs["image"].as_numpy()[0]).convert("RGB"))
    want = generate_image(tiny_pipeline(), TextToImageParams("a red mug", seed=7, steps=2), False).image
    assert np.array_equal(got, np.asarray(want))


@pytest.mark.parametrize("prompt,code,match", [
    (b"   ", "INVALID_ARG", "prompt is empty"),
    (b"\xff\xfe", "INVALID_ARG", "prompt is not UTF-8"),
    (None, "INVALID_ARG", "missing input 'prompt'"),
])
def test_t2i_refuses_a_bad_prompt_and_keeps_serving(models, prompt, code, match):
    responses = Server.models["t2i"].execute([_t2i_request(prompt), _t2i_request(b"a cup")])
    assert responses[0].error().code() == code and match in responses[0].error().message()
    assert not responses[1].has_error()


def test_a_cancelled_t2i_request_stops(models):
    (response,) = Server.models["t2i"].execute([_t2i_request(b"a cup", cancelled=lambda: True)])
    assert response.error().code() == TritonError.CANCELLED


def test_stream_takes_a_prompt_and_sends_the_image_first(models):
    request = _stream_request(steps=1, drop="image")
    request.inputs["prompt"] = Tensor("prompt", np.array([b"a wooden chair"], dtype=np.object_))
    _stream_model(models).execute([request])
    names = _names(request.sender.sent)
    assert names[0] == ("input_image",) and names[-2:] == [("views",), "final"]
    png_bytes = request.sender.sent[0][0].outputs["input_image"].as_numpy()[0]
    assert images.decode_image(png_bytes).size == (64, 64)

    both = _stream_request(steps=1)
    both.inputs["prompt"] = request.inputs["prompt"]
    _stream_model(models).execute([both])
    (response, _), = both.sender.sent
    assert response.error().code() == TritonError.INVALID_ARG and "'prompt'" in response.error().message()
