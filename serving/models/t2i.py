"""Triton model `t2i`: prompt text -> one object image on white, as PNG bytes, the input
`preprocess` takes (engine/text_to_image.py; `hi3d serve build-repo --t2i tiny|DIR`).

The pipeline, its steps and guidance are fixed when the repository is built; a request
chooses the prompt and the seed. It stops between denoising steps when its request is
cancelled, and refuses a bad prompt (INVALID_ARG naming `prompt`) without stopping. It is
the first step of `hi3d_text`, so like `preprocess` it turns new requests away while the
server drains."""
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from hi3d.engine import images
from hi3d.engine.backends import DTYPES
from hi3d.engine.text_to_image import TINY, TextToImageParams, generate_image, load_pipeline
from hi3d.serving import bls
from hi3d.serving.launcher import DRAIN_MARKER


def prompt_input(request) -> str:
    """The one UTF-8 prompt of a request, or InvalidInput naming `prompt`."""
    tensor = pb_utils.get_input_tensor_by_name(request, "prompt")
    if tensor is None:
        raise bls.InvalidInput("missing input 'prompt'")
    data = tensor.as_numpy()
    if data.size != 1:
        raise bls.InvalidInput(f"prompt must hold exactly one string, got shape {list(data.shape)}")
    raw = data.reshape(-1)[0]
    try:
        return raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise bls.InvalidInput("prompt is not UTF-8 text") from None


class TritonPythonModel:
    def initialize(self, args):
        params = bls.parameters(args)
        self.source = params["t2i"]
        self.steps, self.guidance = int(params["t2i_steps"]), float(params["guidance"])
        device = bls.device_of(args)
        dtype = DTYPES[params["gpu_dtype"]] if device.type == "cuda" else torch.float32
        self.pipe = load_pipeline(self.source, device, dtype)
        self.drain_marker = Path(args["model_repository"]).parent / DRAIN_MARKER

    def _run(self, request):
        if self.drain_marker.exists():
            raise bls.Unavailable("this server is draining (shutting down): retry on another replica")
        params = TextToImageParams(prompt=prompt_input(request), seed=bls.scalar_input(request, "seed", int),
                                   steps=self.steps, guidance=self.guidance)

        def progress(stage: str, step: int, total: int) -> None:
            if request.is_cancelled():  # the client gave up: free this instance now
                raise bls.Cancelled()

        # rembg would fetch its model on first use: only a folder pipeline's output is matted
        result = generate_image(self.pipe, params, remove_background=self.source != TINY, progress=progress)
        png = images.png_bytes(np.asarray(result.image))
        return [pb_utils.Tensor("image", np.array([png], dtype=np.object_))]

    def execute(self, requests):
        return bls.respond_each(requests, self._run)
