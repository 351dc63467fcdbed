"""ONNX Runtime runners: the exported fp32 graphs behind the same `Runner` signature.

On a CUDA device with onnxruntime-gpu installed the session runs on the CUDA execution
provider; otherwise on CPU, and tensors make a host round trip (the pipeline's device
is kept: inputs come from it and outputs go back to it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor


def providers_for(device: torch.device) -> list[str]:
    available = ort.get_available_providers()
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(path: Path, device: torch.device, threads: int = 0) -> ort.InferenceSession:
    """A session for the ONNX file at `path` (threads 0: ONNX Runtime's default)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its optimizer's notes are not actionable
    # Memory-pattern planning assumes fixed shapes; our batch/spatial dims vary per call.
    options.enable_mem_pattern = False
    return ort.InferenceSession(str(path), sess_options=options, providers=providers_for(device))


class OnnxRuntimeRunner:
    """Calls one ONNX graph; inputs in graph order, outputs as torch tensors."""

    def __init__(self, path: Path, device: torch.device, dtype: torch.dtype = torch.float32, threads: int = 0):
        self.path = Path(path)
        self.device = torch.device(device)
        self.dtype = dtype  # what outputs are returned in (the graphs compute in fp32)
        self.session = make_session(self.path, self.device, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"{self.path.name} takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        feed = {n: np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy()) for n, x in zip(self.input_names, inputs)}
        outs = self.session.run(self.output_names, feed)
        tensors = tuple(torch.from_numpy(o).to(self.device, self.dtype) for o in outs)
        return tensors[0] if len(tensors) == 1 else tensors
