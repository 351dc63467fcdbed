"""gRPC client of the Hi3D models.

    views = Hi3DClient("localhost:8001").generate(png_bytes, elevation=10.0, seed=0, steps=25)
    views.stage2  # uint8 [16, R2, R2, 3]; views.stage1: uint8 [16, R1, R1, 3]

    for event in Hi3DClient("localhost:8001").stream(png_bytes, want_mesh=True):
        ...  # Progress, Stage1Views, Views, Mesh, in that order (closing the generator cancels)
"""
from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Iterator, Union

import numpy as np

from hi3d.serving.protocol import status_of


class Hi3DClientError(RuntimeError):
    """The server refused or failed the request; `status` is the gRPC status (e.g. StatusCode.INVALID_ARGUMENT)."""

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GeneratedViews:
    stage1: np.ndarray  # [16, R1, R1, 3] uint8
    stage2: np.ndarray | None  # [16, R2, R2, 3] uint8; None from the stage-1-only model


@dataclass(frozen=True)
class Progress:
    event: str  # e.g. "stage1 3/25", "gaussians 40/80", "neus 7/150"
    fraction: float  # of the whole request's steps, in [0, 1]


@dataclass(frozen=True)
class Stage1Views:
    views: np.ndarray  # [16, R1, R1, 3] uint8


@dataclass(frozen=True)
class Views:
    views: np.ndarray  # [16, R2, R2, 3] uint8


@dataclass(frozen=True)
class Mesh:
    glb: bytes  # the .glb file `hi3d reconstruct` writes


Event = Union[Progress, Stage1Views, Views, Mesh]
_POLL_S = 0.5  # how often a waiting stream() looks up, so that Ctrl-C gets through
INVALID_ARGUMENT = "StatusCode.INVALID_ARGUMENT"


def _inputs(g, image: bytes, elevation: float, seed: int, steps: int, extra: tuple = ()) -> list:
    values = [
        ("image", np.array([image], dtype=np.object_), "BYTES"),
        ("elevation", np.array([elevation], dtype=np.float32), "FP32"),
        ("seed", np.array([seed], dtype=np.int64), "INT64"),
        ("steps", np.array([steps], dtype=np.int32), "INT32"),
        *extra,
    ]
    inputs = []
    for name, arr, dtype in values:
        inputs.append(g.InferInput(name, list(arr.shape), dtype))
        inputs[-1].set_data_from_numpy(arr)
    return inputs


def _client_error(model: str, url: str, e: Exception) -> Hi3DClientError:
    """tritonclient's InferenceServerException, or a gRPC transport error, as one error type.
    An error on a stream has no status; our models' messages say which it is (serving.protocol)."""
    status = e.status() if hasattr(e, "status") else None
    message = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    status = status or status_of(message)
    return Hi3DClientError(f"{model} at {url}: {message}", status)


def _events(result) -> list[Event]:
    """The events in one response of hi3d_stream (a response carries one kind of output)."""
    names = {o.name for o in result.get_response().outputs}
    events: list[Event] = []
    if "event" in names:
        events.append(Progress(result.as_numpy("event")[0].decode(), float(result.as_numpy("progress")[0])))
    if "stage1_views" in names:
        events.append(Stage1Views(result.as_numpy("stage1_views")))
    if "views" in names:
        events.append(Views(result.as_numpy("views")))
    if "mesh_glb" in names:
        events.append(Mesh(bytes(result.as_numpy("mesh_glb")[0])))
    return events


class Hi3DClient:
    def __init__(self, url: str = "localhost:8001", timeout_s: float = 600.0, headers: dict[str, str] | None = None):
        import tritonclient.grpc as grpcclient

        self.url, self.timeout_s, self.headers = url, timeout_s, headers
        # Views of the full preset are ~50 MB: lift gRPC's 4 MB default on receive.
        options = [("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 256 << 20)]
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(url, channel_args=options)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Hi3DClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ready(self) -> bool:
        try:
            return self._client.is_server_ready(client_timeout=5.0)
        except Exception:
            return False

    def generate(self, image: bytes, elevation: float = 0.0, seed: int = 0, steps: int = 0,
                 stage1_only: bool = False) -> GeneratedViews:
        """Encoded image bytes (PNG, JPEG, ...) -> views. steps=0: the served preset's default."""
        g = self._grpc
        inputs = _inputs(g, image, elevation, seed, steps)
        model = "hi3d_stage1" if stage1_only else "hi3d"
        names = ["views"] if stage1_only else ["views", "stage1_views"]
        try:
            result = self._client.infer(model, inputs, outputs=[g.InferRequestedOutput(n) for n in names],
                                        client_timeout=self.timeout_s, headers=self.headers)
        except Exception as e:
            raise _client_error(model, self.url, e) from None
        if stage1_only:
            return GeneratedViews(stage1=result.as_numpy("views"), stage2=None)
        return GeneratedViews(stage1=result.as_numpy("stage1_views"), stage2=result.as_numpy("views"))

    def stream(self, image: bytes, elevation: float = 0.0, seed: int = 0, steps: int = 0,
               want_mesh: bool = False) -> Iterator[Event]:
        """Events of one `hi3d_stream` request as they arrive. Leaving the loop early (break,
        an exception, Ctrl-C) cancels the request on the server; `timeout_s` is its deadline.
        A server error raises Hi3DClientError with the status the model gave it
        (INVALID_ARGUMENT for bad input, UNAVAILABLE from a draining server, INTERNAL); None
        where tritonserver refused the request itself (it sends no status on a stream)."""
        g = self._grpc
        inputs = _inputs(g, image, elevation, seed, steps, (("want_mesh", np.array([want_mesh]), "BOOL"),))
        responses: queue.Queue = queue.Queue()
        # Not the `triton_grpc_error` header: in 2.51 its error path logs internal state
        # errors on every stream error, and once took a loaded server down (docs/serving.md).
        self._client.start_stream(callback=lambda result, error: responses.put((result, error)),
                                  stream_timeout=self.timeout_s, headers=self.headers)
        finished = False
        try:
            try:
                self._client.async_stream_infer("hi3d_stream", inputs, enable_empty_final_response=True)
            except self._grpc.InferenceServerException as e:  # the stream failed already (no server there)
                finished = True
                try:
                    _, cause = responses.get(timeout=5.0)  # what the callback was told
                except queue.Empty:
                    cause = e
                raise _client_error("hi3d_stream", self.url, cause or e) from None
            while not finished:
                try:
                    result, error = responses.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if error is not None:
                    finished = True  # the server ended this request itself
                    raise _client_error("hi3d_stream", self.url, error)
                yield from _events(result)
                final = result.get_response().parameters.get("triton_final_response")
                finished = final is not None and final.bool_param
        finally:
            self._client.stop_stream(cancel_requests=not finished)
