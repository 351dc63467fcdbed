"""What the model.py files share inside Triton's python backend stub.

Only importable inside the stub (it imports `triton_python_backend_utils`). Errors that
are the caller's fault become INVALID_ARG responses; the model keeps serving.
"""
from __future__ import annotations

import json
from typing import Callable

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from torch import Tensor

from hi3d.engine.backends import Networks
from hi3d.engine.errors import (
    InvalidInput,  # a request the caller must fix: INVALID_ARG
)
from hi3d.engine.images import to_uint8
from hi3d.engine.pipeline import GenerationParams
from hi3d.serving.networks import NETWORKS, network_io
from hi3d.serving.protocol import INTERNAL_PREFIX, INVALID_PREFIX, UNAVAILABLE_PREFIX

PIXELS = (-1.0, 1.0)  # images and views passed between the models are in [-1, 1]


class Unavailable(Exception):
    """This server takes no new work (it is draining): the client should retry elsewhere."""


class Cancelled(Exception):
    """The client cancelled or timed out the request: stop working on it."""


def parameters(args: dict) -> dict[str, str]:
    """The string `parameters` of this model's config.pbtxt."""
    config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def device_of(args: dict) -> torch.device:
    if args.get("model_instance_kind") == "GPU":
        return torch.device(f"cuda:{args['model_instance_device_id']}")
    return torch.device("cpu")


def input_tensor(request, name: str, value_range: tuple[float, float] | None = None,
                 device: torch.device = torch.device("cpu")) -> Tensor:
    """An input as a tensor on `device`, refused (InvalidInput naming it) when missing, when it holds NaN
    or infinite values, or values outside `value_range`: every model guards what it is sent,
    the internal ones too, since anyone who reaches the server can call them."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInput(f"missing input {name!r}")
    x = from_pb(tensor, device)
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise InvalidInput(f"{name} holds NaN or infinite values")
        if value_range is not None and x.numel() and not (value_range[0] <= x.min() and x.max() <= value_range[1]):
            raise InvalidInput(f"{name} must lie in [{value_range[0]:g}, {value_range[1]:g}], "
                               f"got [{x.min().item():.3g}, {x.max().item():.3g}]")
    return x


def scalar_input(request, name: str, kind: type):
    """A one-element input as a Python scalar, or InvalidInput naming it."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInput(f"missing input {name!r}")
    arr = tensor.as_numpy()
    if arr.size != 1:
        raise InvalidInput(f"{name} must hold exactly one value, got shape {list(arr.shape)}")
    return kind(arr.reshape(-1)[0])


def generation_params(request) -> GenerationParams:
    steps = scalar_input(request, "steps", int)
    return GenerationParams(  # InvalidInput names whatever is out of range
        elevation=scalar_input(request, "elevation", float),
        seed=scalar_input(request, "seed", int),
        steps=None if steps == 0 else steps,  # 0: the preset's
    )


def uint8_views(views: Tensor) -> Tensor:  # [F, 3, R, R] in [-1, 1] -> [F, R, R, 3] uint8
    return torch.stack([torch.from_numpy(to_uint8(v)) for v in views])


def output(name: str, x: Tensor | np.ndarray) -> "pb_utils.Tensor":
    """An output tensor; a GPU one stays in device memory (DLPack)."""
    if isinstance(x, Tensor) and x.is_cuda:
        return to_pb(name, x.detach())
    arr = x.detach().numpy() if isinstance(x, Tensor) else x
    return pb_utils.Tensor(name, np.ascontiguousarray(arr))


def error_response(e: Exception) -> "pb_utils.InferenceResponse":
    if isinstance(e, InvalidInput):
        err = pb_utils.TritonError(INVALID_PREFIX + str(e), pb_utils.TritonError.INVALID_ARG)
    elif isinstance(e, Unavailable):
        err = pb_utils.TritonError(UNAVAILABLE_PREFIX + str(e), pb_utils.TritonError.UNAVAILABLE)
    elif isinstance(e, Cancelled):
        err = pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
    else:
        err = pb_utils.TritonError(f"{INTERNAL_PREFIX}{type(e).__name__}: {e}", pb_utils.TritonError.INTERNAL)
    return pb_utils.InferenceResponse(output_tensors=[], error=err)


def respond_each(requests: list, run: Callable) -> list:
    """One response per request, whatever happened: `run(request)`'s output tensors, or its error."""
    responses = []
    for request in requests:
        try:
            responses.append(pb_utils.InferenceResponse(output_tensors=run(request)))
        except Exception as e:
            responses.append(error_response(e))
    return responses


class TritonRunner:
    """An `engine.backends.Runner` that calls another model of this server (BLS).

    The pipeline calls it like any runner; the network behind it may be a python model,
    an ONNX Runtime model or a TensorRT plan, and a batched one shares its calls with
    concurrent requests. Tensors cross by DLPack, without a copy: from a GPU instance they
    stay on its device (`device`), so a UNet step makes no host round trip.
    """

    def __init__(self, model: str, inputs: tuple[str, ...], outputs: tuple[str, ...], columns: tuple[str, ...] = (),
                 device: torch.device = torch.device("cpu")):
        self.model, self.inputs, self.outputs = model, inputs, outputs
        self.columns = columns  # [B] inputs a batched model declares as [B, 1] (reshaped to [B] again inside)
        self.device = device

    def __call__(self, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        xs = [x.reshape(-1, 1) if n in self.columns else x for n, x in zip(self.inputs, xs)]
        tensors = [to_pb(n, x.detach().float()) for n, x in zip(self.inputs, xs)]
        outs = tuple(from_pb(t, self.device) for t in exec_request(self.model, tensors, self.outputs, self.device))
        return outs if len(outs) > 1 else outs[0]


def to_pb(name: str, x: Tensor) -> "pb_utils.Tensor":
    """A torch tensor (CPU or GPU) as a pb_utils.Tensor sharing its memory."""
    return pb_utils.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(x.contiguous()))


def from_pb(t: "pb_utils.Tensor", device: torch.device) -> Tensor:
    """A pb_utils.Tensor as a torch tensor on `device`. A CPU one is copied: its memory is the
    response's shared-memory region, reused once the response is gone."""
    x = torch.utils.dlpack.from_dlpack(t.to_dlpack())
    return x.to(device) if x.device != device else (x.clone() if x.device.type == "cpu" else x)


def exec_request(model: str, inputs: list, outputs: tuple[str, ...],
                 device: torch.device = torch.device("cpu")) -> list["pb_utils.Tensor"]:
    """One BLS request to `model` of this server, its outputs asked for in `device`'s memory;
    its INVALID_ARG stays the caller's error, and so does UNAVAILABLE (a draining server's
    preprocess turning new work away)."""
    memory = (pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_GPU, device.index or 0) if device.type == "cuda"
              else pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0))
    request = pb_utils.InferenceRequest(model_name=model, requested_output_names=list(outputs), inputs=inputs,
                                        preferred_memory=memory)
    response = request.exec()
    if response.has_error():
        error, message = response.error(), response.error().message()
        if error.code() == pb_utils.TritonError.INVALID_ARG or message.startswith(INVALID_PREFIX):
            raise InvalidInput(message.removeprefix(INVALID_PREFIX))
        if error.code() == pb_utils.TritonError.UNAVAILABLE or message.startswith(UNAVAILABLE_PREFIX):
            raise Unavailable(message.removeprefix(UNAVAILABLE_PREFIX))
        raise RuntimeError(f"model {model}: {message}")
    return [pb_utils.get_output_tensor_by_name(response, n) for n in outputs]


def call(model: str, inputs: list, outputs: tuple[str, ...]) -> list[np.ndarray]:
    """`exec_request` with the outputs as numpy arrays (host memory)."""
    return [t.as_numpy() for t in exec_request(model, inputs, outputs)]


def networks(cfg, device: torch.device) -> Networks:
    """The pipeline's networks inside a BLS model on `device`: each a TritonRunner calling its
    network model."""
    runners = {}
    for name in NETWORKS:
        io = network_io(cfg, name)
        columns = tuple(t.name for t in io.inputs if t.reshape == ())
        runners[name] = TritonRunner(name, tuple(t.name for t in io.inputs), tuple(t.name for t in io.outputs), columns,
                                     device)
    return Networks(**runners, device=device, dtype=torch.float32)
