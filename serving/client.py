"""gRPC client of the `hi3d` ensemble.

    views = Hi3DClient("localhost:8001").generate(png_bytes, elevation=10.0, seed=0, steps=25)
    views.stage2  # uint8 [16, R2, R2, 3]; views.stage1: uint8 [16, R1, R1, 3]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class Hi3DClientError(RuntimeError):
    """The server refused or failed the request; `status` is the gRPC status (e.g. StatusCode.INVALID_ARGUMENT)."""

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GeneratedViews:
    stage1: np.ndarray  # [16, R1, R1, 3] uint8
    stage2: np.ndarray | None  # [16, R2, R2, 3] uint8; None from the stage-1-only model


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
        values = [
            ("image", np.array([image], dtype=np.object_), "BYTES"),
            ("elevation", np.array([elevation], dtype=np.float32), "FP32"),
            ("seed", np.array([seed], dtype=np.int64), "INT64"),
            ("steps", np.array([steps], dtype=np.int32), "INT32"),
        ]
        inputs = []
        for name, arr, dtype in values:
            inputs.append(g.InferInput(name, list(arr.shape), dtype))
            inputs[-1].set_data_from_numpy(arr)
        model = "hi3d_stage1" if stage1_only else "hi3d"
        names = ["views"] if stage1_only else ["views", "stage1_views"]
        try:
            result = self._client.infer(model, inputs, outputs=[g.InferRequestedOutput(n) for n in names],
                                        client_timeout=self.timeout_s, headers=self.headers)
        except Exception as e:  # tritonclient's InferenceServerException, or a gRPC transport error
            status = e.status() if hasattr(e, "status") else None
            message = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
            raise Hi3DClientError(f"{model} at {self.url}: {message}", status) from None
        if stage1_only:
            return GeneratedViews(stage1=result.as_numpy("views"), stage2=None)
        return GeneratedViews(stage1=result.as_numpy("stage1_views"), stage2=result.as_numpy("views"))
