"""The generated model repository, checked without a server: every config.pbtxt parses as
Triton's ModelConfig protobuf, the ensembles are wired consistently, weights round-trip,
and the ONNX Runtime / TensorRT variants reference the right files."""
import shutil
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hi3d.engine.backends.tensorrt_backend import BuildEnv
from hi3d.engine.backends.torch_backend import load_modules
from hi3d.engine.config import tiny
from hi3d.engine.errors import InvalidInput
from hi3d.export.specs import export_specs
from hi3d.export.tensorrt_build import ensure_engine
from hi3d.serving.networks import BATCHED, NETWORKS, load_network
from hi3d.serving.repository import (
    ENSEMBLES,
    MODELS,
    T2I_MODELS,
    RepositoryOptions,
    build_repository,
    read_record,
)

PATHS = ("/opt/numpy1", "/opt/hi3d")


def _config(repo, name) -> model_config_pb2.ModelConfig:
    return text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def torch_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo") / "models"
    opts = RepositoryOptions(preset="tiny", instances=(("stage1", 3),), python_paths=PATHS, batch_delay_us=1234)
    build_repository(repo, opts)
    return repo


def test_every_model_has_a_parsing_config(torch_repo):
    assert sorted(p.name for p in torch_repo.iterdir() if p.is_dir()) == sorted(MODELS)
    for name in MODELS:
        c = _config(torch_repo, name)
        assert c.name == name
        if name in ENSEMBLES:
            assert c.platform == "ensemble"
        else:
            assert c.backend == "python"
            src = (torch_repo / name / "1" / "model.py").read_text()
            assert f"sys.path[:0] = {list(PATHS)!r}" in src.splitlines()[2]  # before anything imports numpy
            assert "class TritonPythonModel" in src


def test_unets_batch_dynamically_and_others_do_not(torch_repo):
    for name in NETWORKS:
        c = _config(torch_repo, name)
        if name in BATCHED:
            assert c.max_batch_size == 8
            assert list(c.dynamic_batching.preferred_batch_size) == [8]
            assert c.dynamic_batching.max_queue_delay_microseconds == 1234
            assert [i.name for i in c.input] == ["sample", "c_noise", "context", "vector"]
            assert c.input[1].HasField("reshape") and list(c.input[1].reshape.shape) == []
        else:
            assert c.max_batch_size == 0 and not c.HasField("dynamic_batching")
    assert _config(torch_repo, "stage1").instance_group[0].count == 3
    assert _config(torch_repo, "unet1").instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_ensembles_are_wired_consistently(torch_repo):
    """Each step reads tensors the ensemble has by then, under names its model declares."""
    for ens in ENSEMBLES:
        c = _config(torch_repo, ens)
        available = {i.name for i in c.input}
        for step in c.ensemble_scheduling.step:
            model = _config(torch_repo, step.model_name)
            assert set(step.input_map) == {i.name for i in model.input}, step.model_name
            assert set(step.input_map.values()) <= available, step.model_name
            assert set(step.output_map) <= {o.name for o in model.output}, step.model_name
            available |= set(step.output_map.values())
        assert {o.name for o in c.output} <= available
    hi3d = _config(torch_repo, "hi3d")
    assert [(i.name, i.data_type) for i in hi3d.input] == [
        ("image", model_config_pb2.TYPE_STRING), ("elevation", model_config_pb2.TYPE_FP32),
        ("seed", model_config_pb2.TYPE_INT64), ("steps", model_config_pb2.TYPE_INT32)]
    assert {o.name: list(o.dims) for o in hi3d.output} == {"views": [16, 128, 128, 3], "stage1_views": [16, 64, 64, 3]}


def test_stream_is_decoupled_and_orchestrators_fill_a_unet_batch(torch_repo):
    stream = _config(torch_repo, "hi3d_stream")
    assert stream.model_transaction_policy.decoupled
    assert [(i.name, i.data_type) for i in stream.input][-1] == ("want_mesh", model_config_pb2.TYPE_BOOL)
    assert [o.name for o in stream.output] == ["event", "progress", "stage1_views", "views", "mesh_glb"]
    # max_batch 8 CFG rows = 4 requests: 4 instances of each orchestrator unless overridden
    counts = {m: _config(torch_repo, m).instance_group[0].count for m in ("stage1", "stage2", "hi3d_stream", "unet1")}
    assert counts == {"stage1": 3, "stage2": 4, "hi3d_stream": 4, "unet1": 1}
    recon = _config(torch_repo, "hi3d_reconstruct")
    assert recon.parameters["recon_preset"].string_value == "cpu_small"  # the CPU default
    assert [(i.name, list(i.dims)) for i in recon.input][0] == ("views", [16, -1, -1, 3])


def test_gpu_repository_samples_and_reconstructs_on_the_gpu(tmp_path):
    build_repository(tmp_path / "g", RepositoryOptions(kind="gpu", gpus=(1,), python_paths=PATHS))
    for name in ("hi3d_reconstruct", "hi3d_stream", "stage1", "stage2"):
        c = _config(tmp_path / "g", name)
        if name in ("hi3d_reconstruct", "hi3d_stream"):
            assert c.parameters["recon_preset"].string_value == "gpu"
        assert c.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU and list(c.instance_group[0].gpus) == [1]
    assert _config(tmp_path / "g", "preprocess").instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_weights_round_trip_to_the_in_process_networks(torch_repo):
    cfg = tiny()
    reference = load_modules(cfg)
    for name in ("clip", "unet1"):
        served = load_network(cfg, name, torch_repo / name / "1" / "weights.pt", torch.device("cpu"), torch.float32)
        ref = reference[name].state_dict()
        got = served.state_dict()
        assert got.keys() == ref.keys()
        assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_record_and_rebuild_replaces_in_place(torch_repo, tmp_path):
    assert sorted(read_record(torch_repo)["models"]) == sorted(MODELS)
    repo = tmp_path / "r"
    build_repository(repo, RepositoryOptions(python_paths=PATHS))
    stale = repo / "unet1" / "stale.txt"
    stale.write_text("x")
    build_repository(repo, RepositoryOptions(python_paths=PATHS, max_batch=4))
    assert not stale.exists() and _config(repo, "unet1").max_batch_size == 4
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no temporary folders left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(InvalidInput, match="not a repository"):
        build_repository(tmp_path, RepositoryOptions())
    assert (tmp_path / "mine.txt").read_text() == "keep"


@pytest.fixture()
def build(tiny_build, tmp_path):
    """A private copy of the tiny export (tests below damage it)."""
    src, rc = tiny_build
    assert rc == 0
    return Path(shutil.copytree(src, tmp_path / "build"))


def test_onnxruntime_repository_copies_the_vouched_for_exports(build, tmp_path):
    repo = tmp_path / "ort"
    build_repository(repo, RepositoryOptions(backend="onnxruntime", artifacts=build, python_paths=PATHS))
    for name in NETWORKS:
        assert _config(repo, name).platform == "onnxruntime_onnx"
        assert (repo / name / "1" / "model.onnx").read_bytes() == (build / "tiny" / "onnx" / f"{name}.onnx").read_bytes()
    assert _config(repo, "stage1").backend == "python"  # the samplers stay BLS python models


def test_onnxruntime_repository_refuses_foreign_or_damaged_exports(build, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "first_stage.pt").write_bytes(b"other weights")
    with pytest.raises(InvalidInput, match="clip .*built for a different configuration.*weights"):
        build_repository(tmp_path / "r1", RepositoryOptions(backend="onnxruntime", artifacts=build, weights=weights))
    depth = build / "tiny" / "onnx" / "depth.onnx"
    depth.write_bytes(depth.read_bytes()[:-100])  # truncated
    with pytest.raises(InvalidInput, match="depth.onnx: no usable ONNX export of depth .*corrupt.*build_engines.py"):
        build_repository(tmp_path / "r2", RepositoryOptions(backend="onnxruntime", artifacts=build))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "weights"]  # nothing half-written


H100 = BuildEnv("10.9.0", "NVIDIA H100 80GB HBM3")
A10 = BuildEnv("10.9.0", "NVIDIA A10")


def _engines(build: Path, env: BuildEnv, precision: str) -> dict[str, bytes]:
    """Plans for every network through the real engine cache, built by a stand-in builder."""
    specs, plans = export_specs(tiny()), {}
    for name in NETWORKS:
        plan = f"{name} {precision} for {env.gpu_name}".encode()
        a = ensure_engine(specs[name], build / "tiny" / "onnx" / f"{name}.onnx", build / "tiny" / "engines",
                          precision, env, lambda *_args, p=plan: (p, b"timing cache"), log=lambda _: None)
        plans[name] = a.path.read_bytes()
    return plans


def test_tensorrt_repository_takes_the_plans_built_for_its_gpu(build, tmp_path):
    mine = _engines(build, H100, "fp16")
    _engines(build, A10, "fp16")  # built later, for another GPU: newer files that must not be taken
    repo = tmp_path / "trt"
    build_repository(repo, RepositoryOptions(backend="tensorrt", artifacts=build, kind="gpu", gpus=(0, 1),
                                             python_paths=PATHS, trt_env=H100))
    for name in NETWORKS:
        c = _config(repo, name)
        assert c.platform == "tensorrt_plan" and not c.backend
        assert c.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        assert list(c.instance_group[0].gpus) == [0, 1]
        assert not (repo / name / "1" / "model.py").exists()
        assert (repo / name / "1" / "model.plan").read_bytes() == mine[name]
    assert _config(repo, "unet2").dynamic_batching.max_queue_delay_microseconds == 5000
    with pytest.raises(InvalidInput, match="no usable TensorRT engine of clip for fp32 on NVIDIA H100.*--engines"):
        build_repository(tmp_path / "fp32", RepositoryOptions(backend="tensorrt", artifacts=build, kind="gpu",
                                                              gpu_dtype="fp32", trt_env=H100))


def test_max_batch_is_checked_against_the_export_profile(build, tmp_path):
    limit = export_specs(tiny())["unet1"].dim_ranges["B"].max
    with pytest.raises(InvalidInput, match=f"--max-batch {limit + 1} exceeds the {limit} rows"):
        build_repository(tmp_path / "r", RepositoryOptions(backend="onnxruntime", artifacts=build, max_batch=limit + 1))
    build_repository(tmp_path / "torch", RepositoryOptions(max_batch=limit + 1))  # torch models take any batch


@pytest.mark.parametrize("opts,match", [
    (RepositoryOptions(backend="tflite"), "backend"),
    (RepositoryOptions(instances=(("unet9", 2),)), "unknown model"),
    (RepositoryOptions(instances=(("unet1", 0),)), "at least 1"),
    (RepositoryOptions(max_batch=1), "max_batch"),
    (RepositoryOptions(recon_preset="huge"), "recon_preset"),
    (RepositoryOptions(recon_preset="gpu"), "kind gpu"),
])
def test_bad_options(tmp_path, opts, match):
    with pytest.raises(ValueError, match=match):
        build_repository(tmp_path / "x", opts)


def test_text_models_only_with_t2i(torch_repo, tmp_path):
    assert not any((torch_repo / m).exists() for m in T2I_MODELS)
    plain_stream = _config(torch_repo, "hi3d_stream")
    assert [i.name for i in plain_stream.input][0] == "image" and not plain_stream.input[0].optional
    repo = tmp_path / "text"
    build_repository(repo, RepositoryOptions(preset="tiny", instances=(("stage1", 3),), python_paths=PATHS,
                                             batch_delay_us=1234, t2i="tiny"))
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted(MODELS + T2I_MODELS)
    assert "hi3d_text" in read_record(repo)["public_models"]
    text = _config(repo, "hi3d_text")
    assert [s.model_name for s in text.ensemble_scheduling.step] == ["t2i", "preprocess", "stage1", "stage2"]
    assert {o.name for o in text.output} == {"views", "stage1_views", "image"}
    stream = {i.name: i for i in _config(repo, "hi3d_stream").input}
    assert stream["image"].optional and stream["prompt"].optional
    for name in (*NETWORKS, "preprocess", "stage1", "stage2", *ENSEMBLES):  # the image path is unchanged
        assert (repo / name / "config.pbtxt").read_text() == (torch_repo / name / "config.pbtxt").read_text()
    with pytest.raises(InvalidInput, match="model_index.json"):
        build_repository(tmp_path / "bad", RepositoryOptions(preset="tiny", python_paths=PATHS, t2i=str(tmp_path)))
