"""Triton model for one network (clip, aesthetic, vae_encoder, vae_decoder, depth, unet1,
unet2) on the torch backend. With dynamic batching Triton hands several requests to one
`execute`: they are concatenated along the batch dimension and run as one call."""
from pathlib import Path

import torch
import triton_python_backend_utils as pb_utils

from hi3d.engine.backends import DTYPES
from hi3d.engine.backends.torch_backend import TorchRunner
from hi3d.engine.config import preset
from hi3d.serving import bls
from hi3d.serving.networks import WEIGHTS_FILE, load_network, network_io


class TritonPythonModel:
    def initialize(self, args):
        params = bls.parameters(args)
        cfg = preset(params["preset"])
        name = params["network"]
        self.io = network_io(cfg, name)
        self.device = bls.device_of(args)
        dtype = DTYPES[params["gpu_dtype"]] if self.device.type == "cuda" else torch.float32
        weights = Path(args["model_repository"]) / args["model_version"] / WEIGHTS_FILE
        compile = params.get("backend") == "compiled"
        self.runner = TorchRunner(load_network(cfg, name, weights, self.device, dtype), dtype, compile=compile)

    def execute(self, requests):
        try:
            # [sum of B, ...] per input; c_noise arrives as [B] or [B, 1] depending on reshape support
            batch = [[bls.input_tensor(r, t.name, device=self.device) for t in self.io.inputs] for r in requests]
            sizes = [b[0].shape[0] for b in batch]
            xs = [torch.cat([b[i] for b in batch]) for i in range(len(self.io.inputs))]
            if self.io.batched:
                xs[1] = xs[1].reshape(-1)
            outs = self.runner(*xs)
            outs = outs if isinstance(outs, tuple) else (outs,)
            parts = [o.float().split(sizes) for o in outs]  # on a GPU they stay there (bls.output)
        except Exception as e:
            return [bls.error_response(e) for _ in requests]
        return [
            pb_utils.InferenceResponse(output_tensors=[bls.output(t.name, p[k]) for t, p in zip(self.io.outputs, parts)])
            for k in range(len(requests))
        ]
