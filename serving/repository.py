"""Writes the Triton model repository of the Hi3D pipeline.

    preprocess   image bytes -> input at both stage resolutions (python)
    clip, aesthetic, vae_encoder, vae_decoder, depth    one network each
    unet1, unet2 the UNets, dynamically batched: concurrent requests share calls
    stage1, stage2   BLS samplers: the pipeline's stage methods calling the models above
    hi3d_reconstruct  16 uint8 views + elevation + seed -> .glb mesh (python)
    hi3d         ensemble: image bytes + elevation + seed + steps -> both stages' views
    hi3d_stage1  ensemble: the same inputs -> stage-1 views only (a quick preview)
    hi3d_mesh    ensemble: hi3d's inputs -> both stages' views + the mesh
    hi3d_stream  decoupled python model: hi3d's inputs + want_mesh -> progress events,
                 stage-1 views, views, mesh, as each exists; cancellable between steps
  with --t2i tiny|DIR (off by default):
    t2i          prompt + seed -> the object image on white, PNG bytes (python)
    hi3d_text    ensemble: prompt + elevation + seed + steps -> t2i -> hi3d's path -> views + image
    hi3d_stream  then also takes `prompt` instead of `image`, and streams the image it made

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

from hi3d.engine.backends import DTYPES
from hi3d.engine.backends.tensorrt_backend import BuildEnv
from hi3d.engine.config import Hi3DConfig, preset
from hi3d.engine.errors import InvalidInput
from hi3d.engine.memory_plans import check_plan_name
from hi3d.engine.recon.config import PRESETS as RECON_PRESETS
from hi3d.engine.recon.config import recon_preset
from hi3d.export import artifacts
from hi3d.export.artifact_dir import ArtifactDir
from hi3d.export.backends import backend_named
from hi3d.export.onnx_export import export_key, weights_fingerprint
from hi3d.export.specs import export_specs
from hi3d.export.specs import network_config as export_network_config
from hi3d.export.tensorrt_build import find_engine
from hi3d.serving.networks import BATCHED, NETWORKS, TensorIO, network_io

ENSEMBLES = ("hi3d", "hi3d_stage1", "hi3d_mesh")
T2I_MODELS = ("t2i", "hi3d_text")  # only in a repository built with --t2i
# What clients call. Each request passes `preprocess` once (the door a drain closes) and ends
# at its entry point; hi3d_reconstruct, which takes views, is public too but has no door.
PUBLIC_MODELS = ("hi3d", "hi3d_stage1", "hi3d_mesh", "hi3d_stream")
MODELS = ("preprocess", *NETWORKS, "stage1", "stage2", "hi3d_reconstruct", "hi3d_stream", *ENSEMBLES)
MARKER = ".hi3d-repository.json"  # at the root; Triton only looks at folders
SOURCES = Path(__file__).parent / "models"
# Models that drive the UNets, one request per instance: max_batch / 2 instances each by
# default, so that enough requests are in flight to fill one UNet batch (2 CFG rows each).
ORCHESTRATORS = ("stage1", "stage2", "hi3d_stream")


@dataclass(frozen=True)
class RepositoryOptions:
    preset: str = "tiny"
    backend: str = "torch"
    weights: Path | None = None  # official checkpoints (torch backend); None: seeded random weights
    artifacts: Path = Path("build")  # export output (onnxruntime / tensorrt backends)
    kind: str = "cpu"  # where the networks run: cpu | gpu
    gpus: tuple[int, ...] = ()  # GPU ids for kind=gpu (empty: all)
    instances: tuple[tuple[str, int], ...] = ()  # (model, count) overrides (default: max_batch // 2 per orchestrator, else 1)
    max_batch: int = 8  # UNet batch limit, in CFG rows (one request sends 2)
    batch_delay_us: int = 5000  # how long a UNet call waits for other requests to join it
    max_image_bytes: int = 32 << 20
    gpu_dtype: str = "fp16"  # torch backend on GPU
    python_paths: tuple[str, ...] = ()  # prepended to sys.path in every model.py (docs/serving.md)
    trt_env: BuildEnv | None = None  # tensorrt: the engines' TensorRT and GPU (None: this host's)
    # Recorded only: Triton loads every network model (its own weights) at start, so staging has
    # nothing to move, and the samplers batch CFG rows across requests, which a split would undo.
    memory_plan: str = "resident"
    recon_preset: str | None = None  # served reconstruction (None: cpu_small, or gpu with kind=gpu)
    t2i: str | None = None  # text-to-image: "tiny" or a local diffusers folder; None: no text models
    t2i_steps: int | None = None  # None: 2 for tiny, 30 for a folder
    guidance: float = 7.5

    def models(self) -> tuple[str, ...]:
        return MODELS + (T2I_MODELS if self.t2i is not None else ())

    def public_models(self) -> tuple[str, ...]:
        return PUBLIC_MODELS + (("hi3d_text",) if self.t2i is not None else ())

    @property
    def recon(self) -> str:
        return self.recon_preset or ("gpu" if self.kind == "gpu" else "cpu_small")

    def validate(self) -> None:
        backend_named(self.backend)
        check_plan_name(self.memory_plan)
        preset(self.preset)
        if self.weights is not None and not Path(self.weights).is_dir():
            raise InvalidInput(f"weights: {self.weights} is not a directory")
        if self.preset == "full" and self.weights is None and backend_named(self.backend).served_as == "python":
            raise InvalidInput("the full preset needs weights: --weights DIR (the official checkpoints)")
        if self.gpu_dtype not in DTYPES:
            raise InvalidInput(f"gpu_dtype must be one of {', '.join(DTYPES)}, got {self.gpu_dtype!r}")
        if self.kind not in ("cpu", "gpu"):
            raise InvalidInput(f"kind must be cpu or gpu, got {self.kind!r}")
        if self.max_batch < 2:
            raise InvalidInput(f"max_batch must be >= 2 (one request's CFG pair), got {self.max_batch}")
        if self.recon not in RECON_PRESETS:
            raise InvalidInput(f"recon_preset must be one of {', '.join(RECON_PRESETS)}, got {self.recon!r}")
        if recon_preset(self.recon).device.startswith("cuda") and self.kind != "gpu":
            raise InvalidInput(f"reconstruction preset {self.recon!r} runs on a GPU: use --kind gpu or another preset")
        if self.t2i is not None:
            from hi3d.engine.text_to_image import TINY, TextToImageParams, check_folder, default_steps

            if self.t2i != TINY:
                check_folder(Path(self.t2i))
            TextToImageParams("check", steps=self.t2i_steps or default_steps(self.t2i), guidance=self.guidance)
        for model, count in self.instances:
            if model not in self.models() or model in ENSEMBLES or model == "hi3d_text":
                served = [m for m in self.models() if m not in ENSEMBLES and m != "hi3d_text"]
                raise InvalidInput(f"instances: unknown model {model!r}; choose from {served}")
            if count < 1:
                raise InvalidInput(f"instances: {model} needs at least 1 instance, got {count}")


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
    count = dict(opts.instances).get(model, opts.max_batch // 2 if model in ORCHESTRATORS else 1)
    if on_gpu:
        gpus = f" gpus: {_dims(opts.gpus)}" if opts.gpus else ""
        return f"instance_group [ {{ count: {count} kind: KIND_GPU{gpus} }} ]\n"
    return f"instance_group [ {{ count: {count} kind: KIND_CPU }} ]\n"


def network_config(cfg: Hi3DConfig, opts: RepositoryOptions, name: str) -> str:
    io = network_io(cfg, name)
    served_as = backend_named(opts.backend).served_as
    if served_as == "python":
        head = f"name: \"{name}\"\nbackend: \"python\"\n"
    else:
        head = f"name: \"{name}\"\nplatform: \"{served_as}\"\n"
    text = head + f"max_batch_size: {opts.max_batch if io.batched else 0}\n"
    text += _io_block("input", [_tensor(t) for t in io.inputs]) + _io_block("output", [_tensor(t) for t in io.outputs])
    if io.batched:
        # Only a full batch goes at once: a smaller preferred size (4 was one) sends the first two
        # requests off without waiting for the others within the queue delay.
        text += "dynamic_batching {\n"
        text += f"  preferred_batch_size: {_dims((opts.max_batch,))}\n"
        text += f"  max_queue_delay_microseconds: {opts.batch_delay_us}\n}}\n"
    text += _instances(opts, name, opts.kind == "gpu")
    if served_as == "python":
        text += _parameters({"preset": cfg.name, "network": name, "gpu_dtype": opts.gpu_dtype, "backend": opts.backend})
    return text


def _python_config(name: str, inputs: list[str], outputs: list[str], params: dict[str, str], opts: RepositoryOptions,
                   on_gpu: bool = False, decoupled: bool = False) -> str:
    text = f"name: \"{name}\"\nbackend: \"python\"\nmax_batch_size: 0\n"
    if decoupled:  # any number of responses per request, the last one flagged final
        text += "model_transaction_policy { decoupled: true }\n"
    text += _io_block("input", inputs) + _io_block("output", outputs)
    return text + _instances(opts, name, on_gpu) + _parameters(params)


def _scalars() -> list[str]:
    return [_tensor(TensorIO("elevation", (1,))), _tensor(TensorIO("seed", (1,)), "TYPE_INT64"),
            _tensor(TensorIO("steps", (1,)), "TYPE_INT32")]


def stage_configs(cfg: Hi3DConfig, opts: RepositoryOptions) -> dict[str, str]:
    f, r1, r2 = cfg.num_frames, cfg.stage1.resolution, cfg.stage2.resolution
    image1, image2 = TensorIO("image1", (1, 3, r1, r1)), TensorIO("image2", (1, 3, r2, r2))
    views1 = TensorIO("views1", (f, 3, r1, r1))
    u8 = lambda n, r: _tensor(TensorIO(n, (f, r, r, 3)), "TYPE_UINT8")  # noqa: E731
    image, prompt = _tensor(TensorIO("image", (1,)), "TYPE_STRING"), _tensor(TensorIO("prompt", (1,)), "TYPE_STRING")
    # With a t2i model the stream takes a prompt instead of an image (one of the two) and sends
    # the image it made; without one its inputs and outputs stay as they always were.
    stream_source = [_optional(image), _optional(prompt)] if opts.t2i is not None else [image]
    stream_image = [_tensor(TensorIO("input_image", (1,)), "TYPE_STRING")] if opts.t2i is not None else []
    gpu = opts.kind == "gpu"  # where the samplers, the stream and the reconstruction run (with the networks)
    return {
        "preprocess": _python_config(
            "preprocess", [_tensor(TensorIO("image", (1,)), "TYPE_STRING")], [_tensor(image1), _tensor(image2)],
            {"preset": cfg.name, "max_image_bytes": str(opts.max_image_bytes)}, opts),
        "stage1": _python_config(
            "stage1", [_tensor(image1), *_scalars()], [_tensor(views1), u8("views1_uint8", r1)],
            {"preset": cfg.name, "stage": "1"}, opts, on_gpu=gpu),
        "stage2": _python_config(
            "stage2", [_tensor(image2), _tensor(views1), *_scalars()], [u8("views2_uint8", r2)],
            {"preset": cfg.name, "stage": "2"}, opts, on_gpu=gpu),
        # The samplers and the reconstruction run where the networks do: on a GPU the sampling
        # loop keeps its latents there (DLPack between the models), and the GPU recon preset needs one.
        "hi3d_reconstruct": _python_config(
            "hi3d_reconstruct", [u8("views", -1), *_scalars()[:2]], [_tensor(TensorIO("mesh_glb", (1,)), "TYPE_STRING")],
            {"recon_preset": opts.recon}, opts, on_gpu=gpu),
        "hi3d_stream": _python_config(
            "hi3d_stream", [*stream_source, *_scalars(), _tensor(TensorIO("want_mesh", (1,)), "TYPE_BOOL")],
            [_tensor(TensorIO("event", (1,)), "TYPE_STRING"), _tensor(TensorIO("progress", (1,))),
             u8("stage1_views", r1), u8("views", r2), _tensor(TensorIO("mesh_glb", (1,)), "TYPE_STRING"),
             *stream_image],
            {"preset": cfg.name, "recon_preset": opts.recon}, opts, on_gpu=gpu, decoupled=True),
        **(t2i_configs(opts) if opts.t2i is not None else {}),
    }


def _optional(text: str) -> str:
    return text[:-2] + " optional: true }"


def t2i_configs(opts: RepositoryOptions) -> dict[str, str]:
    from hi3d.engine.text_to_image import default_steps

    params = {"t2i": str(Path(opts.t2i).resolve()) if opts.t2i != "tiny" else "tiny",
              "t2i_steps": str(opts.t2i_steps or default_steps(opts.t2i)), "guidance": str(opts.guidance),
              "gpu_dtype": opts.gpu_dtype}
    return {"t2i": _python_config(
        "t2i", [_tensor(TensorIO("prompt", (1,)), "TYPE_STRING"), _tensor(TensorIO("seed", (1,)), "TYPE_INT64")],
        [_tensor(TensorIO("image", (1,)), "TYPE_STRING")], params, opts, on_gpu=opts.kind == "gpu")}


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    ins = " ".join(f"input_map {{ key: \"{k}\" value: \"{v}\" }}" for k, v in inputs.items())
    outs = " ".join(f"output_map {{ key: \"{k}\" value: \"{v}\" }}" for k, v in outputs.items())
    return f"  {{ model_name: \"{model}\" model_version: -1\n    {ins}\n    {outs} }}"


def ensemble_configs(cfg: Hi3DConfig, text: bool = False) -> dict[str, str]:
    f, r1, r2 = cfg.num_frames, cfg.stage1.resolution, cfg.stage2.resolution
    scalars = {k: k for k in ("elevation", "seed", "steps")}
    pre = _step("preprocess", {"image": "image"}, {"image1": "image1", "image2": "image2"})
    pre1 = _step("preprocess", {"image": "image"}, {"image1": "image1"})  # an ensemble may not leave a tensor unused

    def ensemble(name: str, outputs: list[str], steps: list[str], source: str = "image") -> str:
        inputs = [_tensor(TensorIO(source, (1,)), "TYPE_STRING"), *_scalars()]
        text = f"name: \"{name}\"\nplatform: \"ensemble\"\nmax_batch_size: 0\n"
        text += _io_block("input", inputs) + _io_block("output", outputs)
        return text + "ensemble_scheduling {\n step [\n" + ",\n".join(steps) + "\n ]\n}\n"

    u8 = lambda n, r: _tensor(TensorIO(n, (f, r, r, 3)), "TYPE_UINT8")  # noqa: E731
    stages = [
        _step("stage1", {"image1": "image1", **scalars}, {"views1": "views1", "views1_uint8": "stage1_views"}),
        _step("stage2", {"image2": "image2", "views1": "views1", **scalars}, {"views2_uint8": "views"}),
    ]
    text_models = {"hi3d_text": ensemble(
        "hi3d_text", [u8("views", r2), u8("stage1_views", r1), _tensor(TensorIO("image", (1,)), "TYPE_STRING")],
        [_step("t2i", {"prompt": "prompt", "seed": "seed"}, {"image": "image"}), pre, *stages], source="prompt")}
    return {
        **(text_models if text else {}),
        "hi3d": ensemble("hi3d", [u8("views", r2), u8("stage1_views", r1)], [
            pre,
            _step("stage1", {"image1": "image1", **scalars}, {"views1": "views1", "views1_uint8": "stage1_views"}),
            _step("stage2", {"image2": "image2", "views1": "views1", **scalars}, {"views2_uint8": "views"}),
        ]),
        "hi3d_stage1": ensemble("hi3d_stage1", [u8("views", r1)], [
            pre1, _step("stage1", {"image1": "image1", **scalars}, {"views1_uint8": "views"}),
        ]),
        "hi3d_mesh": ensemble("hi3d_mesh", [u8("views", r2), u8("stage1_views", r1), _tensor(TensorIO("mesh_glb", (1,)), "TYPE_STRING")], [
            pre,
            _step("stage1", {"image1": "image1", **scalars}, {"views1": "views1", "views1_uint8": "stage1_views"}),
            _step("stage2", {"image2": "image2", "views1": "views1", **scalars}, {"views2_uint8": "views"}),
            _step("hi3d_reconstruct", {"views": "views", "elevation": "elevation", "seed": "seed"}, {"mesh_glb": "mesh_glb"}),
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


def _export_hint(cfg: Hi3DConfig, opts: RepositoryOptions, engines: bool) -> str:
    weights = f" --weights {opts.weights}" if opts.weights else ""
    return (f"python export/build_engines.py --preset {cfg.name}{weights} --out {opts.artifacts}"
            + (" --engines" if engines else " --onnx-only"))


def _checked_onnx(cfg: Hi3DConfig, opts: RepositoryOptions, name: str, specs: dict, weights_id: str) -> Path:
    """The exported graph of `name` for this configuration and these weights, vouched for by
    its sidecar's key and hashes (never a file built for something else)."""
    path = ArtifactDir(opts.artifacts, cfg).onnx_path(name)
    verdict = artifacts.verify(path, export_key(specs[name], export_network_config(cfg, name), weights_id))
    if not verdict.ok:
        raise InvalidInput(f"{path}: no usable ONNX export of {name} ({verdict.reason}); run "
                           f"`{_export_hint(cfg, opts, engines=False)}` or pass --artifacts")
    return path


def _network_files(cfg: Hi3DConfig, opts: RepositoryOptions, version: Path, name: str, modules: dict | None,
                   trt_env: BuildEnv | None) -> None:
    served_as = backend_named(opts.backend).served_as
    if served_as == "python":
        import torch

        torch.save(modules[name].state_dict(), version / "weights.pt")
        (version / "model.py").write_text(_model_py("network", opts.python_paths))
        return
    specs = export_specs(cfg)
    onnx = _checked_onnx(cfg, opts, name, specs, weights_fingerprint(opts.weights, cfg))
    if served_as == "onnxruntime_onnx":
        shutil.copy2(onnx, version / "model.onnx")
        for data in artifacts.read_sidecar(onnx)["files"]:  # external weights keep the name the graph refers to
            if data != onnx.name:
                shutil.copy2(onnx.parent / data, version / data)
        return
    plan, _, _, verdict = find_engine(specs[name], onnx, ArtifactDir(opts.artifacts, cfg).engines_dir,
                                      engine_precision(opts.gpu_dtype), trt_env)
    if not verdict.ok:
        raise InvalidInput(f"no usable TensorRT engine of {name} for {engine_precision(opts.gpu_dtype)} on "
                           f"{trt_env.gpu_name} with TensorRT {trt_env.tensorrt_version} ({plan.name}: "
                           f"{verdict.reason}); build it with `{_export_hint(cfg, opts, engines=True)}`")
    shutil.copy2(plan, version / "model.plan")


def engine_precision(dtype: str) -> str:
    """The engine precision a compute dtype asks for (TensorRT has no bf16 builds here)."""
    return "fp32" if dtype == "fp32" else "fp16"


def _trt_env(opts: RepositoryOptions) -> BuildEnv:
    """The TensorRT version and GPU of this host: a plan only runs where it was built."""
    if opts.trt_env is not None:
        return opts.trt_env
    from hi3d.engine.backends.tensorrt_backend import current_env, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        raise InvalidInput(f"a TensorRT repository is built on the GPU host that serves it, and {reason}")
    return current_env()


def _check_batch_limit(cfg: Hi3DConfig, opts: RepositoryOptions) -> None:
    """Triton may hand a batched model up to max_batch rows: exported files take at most
    their profile's maximum batch."""
    if backend_named(opts.backend).served_as == "python":
        return
    specs = export_specs(cfg)
    for name in BATCHED:
        limit = specs[name].dim_ranges["B"].max
        if opts.max_batch > limit:
            raise InvalidInput(f"--max-batch {opts.max_batch} exceeds the {limit} rows that the exported "
                               f"{name} takes (its export profile's maximum batch)")


def _write(repo: Path, cfg: Hi3DConfig, opts: RepositoryOptions) -> None:
    modules, trt_env = None, None
    _check_batch_limit(cfg, opts)
    if backend_named(opts.backend).served_as == "python":
        from hi3d.engine.backends.torch_backend import load_modules

        modules = load_modules(cfg, opts.weights)
    elif backend_named(opts.backend).served_as == "tensorrt_plan":
        trt_env = _trt_env(opts)
    configs = {**{n: network_config(cfg, opts, n) for n in NETWORKS}, **stage_configs(cfg, opts),
               **ensemble_configs(cfg, text=opts.t2i is not None)}
    sources = {"preprocess": "preprocess", "stage1": "sampler", "stage2": "sampler",
               "hi3d_reconstruct": "reconstruct", "hi3d_stream": "stream", "t2i": "t2i"}
    for name, text in configs.items():
        version = repo / name / "1"
        version.mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(text)
        if name in NETWORKS:
            _network_files(cfg, opts, version, name, modules, trt_env)
        elif name in sources:
            (version / "model.py").write_text(_model_py(sources[name], opts.python_paths))
    record = {"models": list(configs), "public_models": list(opts.public_models()), "preset": cfg.name, **asdict(opts)}
    (repo / MARKER).write_text(json.dumps(record, indent=2, default=str))


def build_repository(out: Path, opts: RepositoryOptions) -> list[str]:
    """Write the repository to `out` (replacing one this function wrote before); returns model names."""
    opts.validate()
    cfg = preset(opts.preset)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InvalidInput(f"{out} exists and is not a repository written by build-repo; choose another --out")
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
    return list(opts.models())


def read_record(repo: Path) -> dict:
    """What build-repo recorded about a repository (models, options)."""
    marker = Path(repo) / MARKER
    if not marker.is_file():
        raise InvalidInput(f"{repo}: not a model repository written by `hi3d serve build-repo`")
    return json.loads(marker.read_text())


def default_python_paths(numpy_dir: Path | None) -> tuple[str, ...]:
    """numpy<2 first (see serving/server_install.py), then this interpreter's site-packages
    (where hi3d is installed, editable or not)."""
    import site

    paths = ([str(numpy_dir)] if numpy_dir else []) + site.getsitepackages()
    user = site.getusersitepackages()
    return tuple(paths + ([user] if os.path.isdir(user) else []))

