"""Writes the Triton model repository of the Hi3D pipeline.

    preprocess   image bytes -> input at both stage resolutions (python)
    clip, aesthetic, vae_encoder, vae_decoder, depth    one network each
    unet1, unet2 the UNets, dynamically batched: concurrent requests share calls
    stage1, stage2   BLS samplers: the pipeline's stage methods calling the models above
    hi3d         ensemble: image bytes + elevation + seed + steps -> both stages' views
    hi3d_stage1  ensemble: the same inputs -> stage-1 views only (a quick preview)

Networks run on the torch backend (python models loading the weights written here), on
ONNX Runtime (`model.onnx` from export artifacts) or TensorRT (`model.plan`).
The repository is built in a temporary folder and swapped in only when complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from hi3d.engine.config import Hi3DConfig, preset
from hi3d.serving.networks import NETWORKS, TensorIO, network_io

BACKENDS = ("torch", "onnxruntime", "tensorrt")
ENSEMBLES = ("hi3d", "hi3d_stage1")
MODELS = ("preprocess", *NETWORKS, "stage1", "stage2", *ENSEMBLES)
MARKER = ".hi3d-repository.json"  # at the root; Triton only looks at folders
SOURCES = Path(__file__).parent / "models"
DEFAULT_INSTANCES = {"stage1": 2, "stage2": 2}  # so two requests can reach a UNet together


@dataclass(frozen=True)
class RepositoryOptions:
    preset: str = "tiny"
    backend: str = "torch"
    weights: Path | None = None  # official checkpoints (torch backend); None: seeded random weights
    artifacts: Path = Path("build")  # export output (onnxruntime / tensorrt backends)
    kind: str = "cpu"  # where the networks run: cpu | gpu
    gpus: tuple[int, ...] = ()  # GPU ids for kind=gpu (empty: all)
    instances: tuple[tuple[str, int], ...] = ()  # (model, count) overrides of DEFAULT_INSTANCES / 1
    max_batch: int = 8  # UNet batch limit, in CFG rows (one request sends 2)
    batch_delay_us: int = 5000  # how long a UNet call waits for other requests to join it
    max_image_bytes: int = 32 << 20
    gpu_dtype: str = "fp16"  # torch backend on GPU
    python_paths: tuple[str, ...] = ()  # prepended to sys.path in every model.py (see README)

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.kind not in ("cpu", "gpu"):
            raise ValueError(f"kind must be cpu or gpu, got {self.kind!r}")
        if self.max_batch < 2:
            raise ValueError(f"max_batch must be >= 2 (one request's CFG pair), got {self.max_batch}")
        for model, count in self.instances:
            if model not in MODELS or model in ENSEMBLES:
                raise ValueError(f"instances: unknown model {model!r}; choose from {MODELS[:-2]}")
            if count < 1:
                raise ValueError(f"instances: {model} needs at least 1 instance, got {count}")


# --- config.pbtxt text ---------------------------------------------------------------------
def _dims(d: tuple[int, ...]) -> str:
    return "[ " + ", ".join(map(str, d)) + " ]"


def _tensor(t: TensorIO, dtype: str = "TYPE_FP32") -> str:
    extra = f" reshape: {{ shape: {_dims(t.reshape)} }}" if t.reshape is not None else ""
    return f"  {{ name: \"{t.name}\" data_type: {dtype} dims: {_dims(t.dims)}{extra} }}"


def _io_block(key: str, tensors: list[str]) -> str:
    return f"{key} [\n" + ",\n".join(tensors) + "\n]\n"


def _parameters(params: dict[str, str]) -> str:
    return "".join(f"parameters {{ key: \"{k}\" value: {{ string_value: \"{v}\" }} }}\n" for k, v in params.items())


def _instances(opts: RepositoryOptions, model: str, on_gpu: bool) -> str:
    count = dict(opts.instances).get(model, DEFAULT_INSTANCES.get(model, 1))
    if on_gpu:
        gpus = f" gpus: {_dims(opts.gpus)}" if opts.gpus else ""
        return f"instance_group [ {{ count: {count} kind: KIND_GPU{gpus} }} ]\n"
    return f"instance_group [ {{ count: {count} kind: KIND_CPU }} ]\n"


def network_config(cfg: Hi3DConfig, opts: RepositoryOptions, name: str) -> str:
    io = network_io(cfg, name)
    if opts.backend == "torch":
        head = f"name: \"{name}\"\nbackend: \"python\"\n"
    else:
        head = f"name: \"{name}\"\nplatform: \"{'onnxruntime_onnx' if opts.backend == 'onnxruntime' else 'tensorrt_plan'}\"\n"
    text = head + f"max_batch_size: {opts.max_batch if io.batched else 0}\n"
    text += _io_block("input", [_tensor(t) for t in io.inputs]) + _io_block("output", [_tensor(t) for t in io.outputs])
    if io.batched:
        preferred = [b for b in (4, 8, 16, 32) if b <= opts.max_batch]
        text += "dynamic_batching {\n"
        if preferred:
            text += f"  preferred_batch_size: {_dims(tuple(preferred))}\n"
        text += f"  max_queue_delay_microseconds: {opts.batch_delay_us}\n}}\n"
    text += _instances(opts, name, opts.kind == "gpu")
    if opts.backend == "torch":
        text += _parameters({"preset": cfg.name, "network": name, "gpu_dtype": opts.gpu_dtype})
    return text


def _python_config(name: str, inputs: list[str], outputs: list[str], params: dict[str, str], opts: RepositoryOptions) -> str:
    text = f"name: \"{name}\"\nbackend: \"python\"\nmax_batch_size: 0\n"
    text += _io_block("input", inputs) + _io_block("output", outputs)
    return text + _instances(opts, name, on_gpu=False) + _parameters(params)


def _scalars() -> list[str]:
    return [_tensor(TensorIO("elevation", (1,))), _tensor(TensorIO("seed", (1,)), "TYPE_INT64"),
            _tensor(TensorIO("steps", (1,)), "TYPE_INT32")]


def stage_configs(cfg: Hi3DConfig, opts: RepositoryOptions) -> dict[str, str]:
    f, r1, r2 = cfg.num_frames, cfg.stage1.resolution, cfg.stage2.resolution
    image1, image2 = TensorIO("image1", (1, 3, r1, r1)), TensorIO("image2", (1, 3, r2, r2))
    views1 = TensorIO("views1", (f, 3, r1, r1))
    u8 = lambda n, r: _tensor(TensorIO(n, (f, r, r, 3)), "TYPE_UINT8")  # noqa: E731
    return {
        "preprocess": _python_config(
            "preprocess", [_tensor(TensorIO("image", (1,)), "TYPE_STRING")], [_tensor(image1), _tensor(image2)],
            {"preset": cfg.name, "max_image_bytes": str(opts.max_image_bytes)}, opts),
        "stage1": _python_config(
            "stage1", [_tensor(image1), *_scalars()], [_tensor(views1), u8("views1_uint8", r1)],
            {"preset": cfg.name, "stage": "1"}, opts),
        "stage2": _python_config(
            "stage2", [_tensor(image2), _tensor(views1), *_scalars()], [u8("views2_uint8", r2)],
            {"preset": cfg.name, "stage": "2"}, opts),
    }


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    ins = " ".join(f"input_map {{ key: \"{k}\" value: \"{v}\" }}" for k, v in inputs.items())
    outs = " ".join(f"output_map {{ key: \"{k}\" value: \"{v}\" }}" for k, v in outputs.items())
    return f"  {{ model_name: \"{model}\" model_version: -1\n    {ins}\n    {outs} }}"


def ensemble_configs(cfg: Hi3DConfig) -> dict[str, str]:
    f, r1, r2 = cfg.num_frames, cfg.stage1.resolution, cfg.stage2.resolution
    inputs = [_tensor(TensorIO("image", (1,)), "TYPE_STRING"), *_scalars()]
    scalars = {k: k for k in ("elevation", "seed", "steps")}
    pre = _step("preprocess", {"image": "image"}, {"image1": "image1", "image2": "image2"})
    pre1 = _step("preprocess", {"image": "image"}, {"image1": "image1"})  # an ensemble may not leave a tensor unused

    def ensemble(name: str, outputs: list[str], steps: list[str]) -> str:
        text = f"name: \"{name}\"\nplatform: \"ensemble\"\nmax_batch_size: 0\n"
        text += _io_block("input", inputs) + _io_block("output", outputs)
        return text + "ensemble_scheduling {\n step [\n" + ",\n".join(steps) + "\n ]\n}\n"

    u8 = lambda n, r: _tensor(TensorIO(n, (f, r, r, 3)), "TYPE_UINT8")  # noqa: E731
    return {
        "hi3d": ensemble("hi3d", [u8("views", r2), u8("stage1_views", r1)], [
            pre,
            _step("stage1", {"image1": "image1", **scalars}, {"views1": "views1", "views1_uint8": "stage1_views"}),
            _step("stage2", {"image2": "image2", "views1": "views1", **scalars}, {"views2_uint8": "views"}),
        ]),
        "hi3d_stage1": ensemble("hi3d_stage1", [u8("views", r1)], [
            pre1, _step("stage1", {"image1": "image1", **scalars}, {"views1_uint8": "views"}),
        ]),
    }


# --- model files ---------------------------------------------------------------------------
def _model_py(source: str, python_paths: tuple[str, ...]) -> str:
    """The model.py source with a header putting this checkout (and numpy<2) on sys.path:
    the stub ignores PYTHONPATH, and must see numpy before anything imports it."""
    body = (SOURCES / f"{source}.py").read_text()
    header = (f"# Generated by `hi3d serve build-repo` from serving/models/{source}.py; edit that file instead.\n"
              f"import sys\nsys.path[:0] = {list(python_paths)!r}\n"
              # .pth files too: an editable install registers the hi3d namespace through one.
              f"import site\nfor _dir in sys.path[:{len(python_paths)}]:\n    site.addsitedir(_dir)\n")
    return header + body


def _network_files(cfg: Hi3DConfig, opts: RepositoryOptions, version: Path, name: str, modules: dict | None) -> None:
    if opts.backend == "torch":
        import torch

        torch.save(modules[name].state_dict(), version / "weights.pt")
        (version / "model.py").write_text(_model_py("network", opts.python_paths))
    elif opts.backend == "onnxruntime":
        onnx = opts.artifacts / cfg.name / "onnx" / f"{name}.onnx"
        if not onnx.is_file():
            raise FileNotFoundError(f"{onnx}: no ONNX export of {name}; run `hi3d export` first or pass --artifacts")
        shutil.copy2(onnx, version / "model.onnx")
        for data in onnx.parent.glob(f"{name}.onnx.data*"):  # external weights keep the name the graph refers to
            shutil.copy2(data, version / data.name)
    else:
        plans = sorted((opts.artifacts / cfg.name / "engines").glob(f"{name}.*.plan"), key=lambda p: p.stat().st_mtime)
        if not plans:
            raise FileNotFoundError(f"{opts.artifacts / cfg.name / 'engines'}: no TensorRT plan of {name}; build engines first")
        shutil.copy2(plans[-1], version / "model.plan")


def _write(repo: Path, cfg: Hi3DConfig, opts: RepositoryOptions) -> None:
    modules = None
    if opts.backend == "torch":
        from hi3d.engine.backends.torch_backend import load_modules

        modules = load_modules(cfg, opts.weights)
    configs = {**{n: network_config(cfg, opts, n) for n in NETWORKS}, **stage_configs(cfg, opts), **ensemble_configs(cfg)}
    sources = {"preprocess": "preprocess", "stage1": "sampler", "stage2": "sampler"}
    for name, text in configs.items():
        version = repo / name / "1"
        version.mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(text)
        if name in NETWORKS:
            _network_files(cfg, opts, version, name, modules)
        elif name in sources:
            (version / "model.py").write_text(_model_py(sources[name], opts.python_paths))
    record = {"models": list(configs), "preset": cfg.name, **asdict(opts)}
    (repo / MARKER).write_text(json.dumps(record, indent=2, default=str))


def build_repository(out: Path, opts: RepositoryOptions) -> list[str]:
    """Write the repository to `out` (replacing one this function wrote before); returns model names."""
    opts.validate()
    cfg = preset(opts.preset)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise FileExistsError(f"{out} exists and is not a repository written by build-repo; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        _write(tmp, cfg, opts)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return list(MODELS)


def read_record(repo: Path) -> dict:
    """What build-repo recorded about a repository (models, options)."""
    marker = Path(repo) / MARKER
    if not marker.is_file():
        raise FileNotFoundError(f"{repo}: not a model repository written by `hi3d serve build-repo`")
    return json.loads(marker.read_text())


def default_python_paths(numpy_dir: Path | None) -> tuple[str, ...]:
    """numpy<2 first (see serving/server_install.py), then this interpreter's site-packages
    (where hi3d is installed, editable or not)."""
    import site

    paths = ([str(numpy_dir)] if numpy_dir else []) + site.getsitepackages()
    user = site.getusersitepackages()
    return tuple(paths + ([user] if os.path.isdir(user) else []))

