"""Triton model `preprocess`: image bytes -> the white-backed, square-cropped input at both
stage resolutions, exactly as `hi3d generate` prepares a file (engine/images.py).

It is the first step of every public entry point, so it is where a draining server turns
new requests away (UNAVAILABLE) while those already past it run to the end."""
from pathlib import Path

import triton_python_backend_utils as pb_utils

from hi3d.engine import images
from hi3d.engine.config import preset
from hi3d.serving import bls
from hi3d.serving.launcher import DRAIN_MARKER


class TritonPythonModel:
    def initialize(self, args):
        params = bls.parameters(args)
        self.cfg = preset(params["preset"])
        self.max_bytes = int(params["max_image_bytes"])
        self.drain_marker = Path(args["model_repository"]).parent / DRAIN_MARKER

    def _run(self, request):
        if self.drain_marker.exists():
            raise bls.Unavailable("this server is draining (shutting down): retry on another replica")
        data = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
        if data.size != 1:
            raise bls.InvalidInput(f"image must hold exactly one encoded image, got shape {list(data.shape)}")
        raw = data.reshape(-1)[0]
        raw = raw.encode() if isinstance(raw, str) else bytes(raw)
        if len(raw) > self.max_bytes:
            raise bls.InvalidInput(f"image is {len(raw)} bytes: more than the {self.max_bytes} this server accepts")
        rgb = images.on_white(images.decode_image(raw))  # InvalidInput if it is no usable image
        return [bls.output("image1", images.square_crop(rgb, self.cfg.stage1.resolution)),
                bls.output("image2", images.square_crop(rgb, self.cfg.stage2.resolution))]

    def execute(self, requests):
        return bls.respond_each(requests, self._run)
