"""What the model.py files share inside Triton's python backend stub.

Only importable inside the stub (it imports `triton_python_backend_utils`). Errors that
are the caller's fault become INVALID_ARG responses; the model keeps serving.
"""
from __future__ import annotations

import json

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from torch import Tensor

from hi3d.engine.errors import (
    InvalidInput,  # a request the caller must fix: INVALID_ARG
)


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


def input_tensor(request, name: str, value_range: tuple[float, float] | None = None) -> Tensor:
    """An input as a tensor, refused (InvalidInput naming it) when missing, when it holds NaN
    or infinite values, or values outside `value_range`: every model guards what it is sent,
    the internal ones too, since anyone who reaches the server can call them."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInput(f"missing input {name!r}")
    x = torch.from_numpy(tensor.as_numpy().copy())
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


def output(name: str, x: Tensor | np.ndarray) -> "pb_utils.Tensor":
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else x
    return pb_utils.Tensor(name, np.ascontiguousarray(arr))


def error_response(e: Exception) -> "pb_utils.InferenceResponse":
    if isinstance(e, InvalidInput):
        err = pb_utils.TritonError(str(e), pb_utils.TritonError.INVALID_ARG)
    elif isinstance(e, Unavailable):
        err = pb_utils.TritonError(str(e), pb_utils.TritonError.UNAVAILABLE)
    elif isinstance(e, Cancelled):
        err = pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
    else:
        err = pb_utils.TritonError(f"{type(e).__name__}: {e}", pb_utils.TritonError.INTERNAL)
    return pb_utils.InferenceResponse(output_tensors=[], error=err)


class TritonRunner:
    """An `engine.backends.Runner` that calls another model of this server (BLS).

    The pipeline calls it like any runner; the network behind it may be a python model,
    an ONNX Runtime model or a TensorRT plan, and a batched one shares its calls with
    concurrent requests.
    """

    def __init__(self, model: str, inputs: tuple[str, ...], outputs: tuple[str, ...], columns: tuple[str, ...] = ()):
        self.model, self.inputs, self.outputs = model, inputs, outputs
        self.columns = columns  # [B] inputs a batched model declares as [B, 1] (reshaped to [B] again inside)

    def __call__(self, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        xs = [x.reshape(-1, 1) if n in self.columns else x for n, x in zip(self.inputs, xs)]
        tensors = [pb_utils.Tensor(n, np.ascontiguousarray(x.detach().cpu().float().numpy())) for n, x in zip(self.inputs, xs)]
        request = pb_utils.InferenceRequest(model_name=self.model, requested_output_names=list(self.outputs), inputs=tensors)
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"model {self.model}: {response.error().message()}")
        outs = tuple(torch.from_numpy(pb_utils.get_output_tensor_by_name(response, n).as_numpy().copy()) for n in self.outputs)
        return outs if len(outs) > 1 else outs[0]
