"""TensorRT engines vs torch on CUDA (skipped without tensorrt and a GPU)."""
import pytest
import torch

from hi3d.engine.backends.tensorrt_backend import unavailable_reason

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def trt_networks(tiny_build, tiny_cfg):
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from hi3d.export.backends import NetworkRequest, make_networks

    out, _ = tiny_build
    return make_networks("tensorrt", NetworkRequest(tiny_cfg, torch.device("cuda"), torch.float16, artifacts=out,
                                                    cuda_graphs=True))


def test_fp16_engines_match_torch(trt_networks, tiny_cfg):
    from hi3d.engine.backends.torch_backend import load_modules, torch_networks
    from hi3d.export.specs import export_specs

    ref_nets = torch_networks(load_modules(tiny_cfg), torch.device("cuda"), torch.float32)
    for name, spec in export_specs(tiny_cfg).items():
        for point in ("min", "opt", "min"):  # the repeat replays a captured CUDA graph
            inputs = [x.cuda() for x in spec.sample_inputs(spec.sizes(point), seed=2)]
            got, ref = getattr(trt_networks, name)(*inputs), getattr(ref_nets, name)(*inputs)
            for g, r in zip(got if isinstance(got, tuple) else (got,), ref if isinstance(ref, tuple) else (ref,)):
                # fp16 engine vs fp32 torch: fp16 keeps ~3 decimal digits per layer.
                torch.testing.assert_close(g.float(), r.float(), atol=5e-2, rtol=5e-2, msg=name)


def test_input_outside_the_profile_is_named(trt_networks):
    with pytest.raises(ValueError, match="outside the engine's profile"):
        trt_networks.unet1(torch.zeros(9, 16, 8, 8, 8, device="cuda"), torch.zeros(9, device="cuda"),
                           torch.zeros(9, 1, 32, device="cuda"), torch.zeros(9, 768, device="cuda"))
