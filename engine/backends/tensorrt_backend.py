"""TensorRT: engine build, load, device buffers, inference, CUDA graphs.

The only module that imports `tensorrt`, always inside a function, so everything else
imports and tests without it. Written against TensorRT 10's Python API (named I/O
tensors, `execute_async_v3`); TensorRT 8.6 works too (explicit-batch flag below).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # input -> (min, opt, max)


@dataclass(frozen=True)
class BuildEnv:
    """What, besides the ONNX file, decides an engine's contents."""

    tensorrt_version: str
    gpu_name: str


def unavailable_reason() -> str | None:
    """None when engines can be built and run here, else a sentence saying why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install -e '.[gpu]' on a GPU machine)"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    return None


def current_env(device: torch.device | None = None) -> BuildEnv:
    import tensorrt as trt

    return BuildEnv(trt.__version__, torch.cuda.get_device_name(device))


def _logger():
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def build_engine(onnx_path: Path, profile: Profile, precision: str, timing_cache: bytes) -> tuple[bytes, bytes]:
    """Parse `onnx_path` and build a serialized engine for `profile`, starting from
    `timing_cache` (b"" for none). Returns (engine, updated timing cache): kernel timings
    carry over to the next build, in this process or another."""
    import tensorrt as trt

    logger = _logger()
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external weight files relative to the model's folder.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision != "fp32":
        raise ValueError(f"unknown precision {precision!r}; use fp16 or fp32")
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(memoryview(serialized)), bytes(memoryview(config.get_timing_cache().serialize()))


def _torch_dtype(trt_dtype) -> torch.dtype:
    import tensorrt as trt

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.bool: torch.bool, trt.bfloat16: torch.bfloat16}
    return table[trt_dtype]


class TensorRTRunner:
    """One engine, one execution context, one CUDA stream, buffers sized for the
    profile's max shapes (allocated once); input shapes are set per call. With
    `cuda_graphs`, each distinct input-shape tuple is captured once and replayed."""

    def __init__(self, engine_path: Path, device: torch.device, dtype: torch.dtype = torch.float32,
                 cuda_graphs: bool = False):
        import tensorrt as trt

        self.path, self.device, self.dtype, self.cuda_graphs = Path(engine_path), torch.device(device), dtype, cuda_graphs
        self.runtime = trt.Runtime(_logger())
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not load the engine {self.path} (built by another TensorRT version?)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]
        self.limits = {n: self.engine.get_tensor_profile_shape(n, 0) for n in self.inputs}  # (min, opt, max)
        for n in self.inputs:
            self.context.set_input_shape(n, tuple(self.limits[n][2]))
        self.buffers: dict[str, Tensor] = {}
        for n in names:
            numel = math.prod(self.context.get_tensor_shape(n))  # at max input shapes
            self.buffers[n] = torch.empty(numel, dtype=_torch_dtype(self.engine.get_tensor_dtype(n)), device=self.device)
            self.context.set_tensor_address(n, self.buffers[n].data_ptr())
        self.shapes: tuple | None = None  # the input shapes the context is set to
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}

    def _check(self, inputs: tuple[Tensor, ...]) -> None:
        if len(inputs) != len(self.inputs):
            raise TypeError(f"{self.path.name} takes {len(self.inputs)} inputs {self.inputs}, got {len(inputs)}")
        for n, x in zip(self.inputs, inputs):
            lo, _, hi = self.limits[n]
            if len(x.shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, x.shape, hi)):
                raise ValueError(f"{self.path.name}: input {n} has shape {tuple(x.shape)}, outside the "
                                 f"engine's profile {tuple(lo)}..{tuple(hi)}; rebuild with a wider profile")

    def _view(self, name: str, shape) -> Tensor:
        return self.buffers[name][: math.prod(shape)].view(tuple(shape))

    def _enqueue(self, shapes: tuple) -> None:
        if not self.cuda_graphs:
            self._execute()
            return
        graph = self.graphs.get(shapes)
        if graph is None:
            self._execute()  # TensorRT finishes deferred set-up on the first enqueue, never in a capture
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self._execute()
            self.graphs[shapes] = graph
        graph.replay()

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to enqueue {self.path.name}")

    def __call__(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        self._check(inputs)
        shapes = tuple(tuple(x.shape) for x in inputs)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            for n, x in zip(self.inputs, inputs):
                self._view(n, x.shape).copy_(x)
            if shapes != self.shapes:
                for n, s in zip(self.inputs, shapes):
                    self.context.set_input_shape(n, s)
                self.shapes = shapes
            self._enqueue(shapes)
            # Buffers are reused by the next call: hand out copies.
            outs = tuple(self._view(n, self.context.get_tensor_shape(n)).to(self.dtype, copy=True) for n in self.outputs)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        for o in outs:
            o.record_stream(torch.cuda.current_stream(self.device))
        return outs[0] if len(outs) == 1 else outs
