"""The cost model's parameter count and FLOP figures, against independent counts."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.attention_processor import Attention
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from hi3d.bench.cost_model import H100_SXM, Cost, count_forward, fake_unet
from hi3d.engine.config import full


@pytest.fixture(scope="module")
def full_stage1():
    cfg = full()
    mode, unet = fake_unet(cfg.stage1.unet, cfg.num_frames)
    return cfg, mode, unet


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_full_unet_has_about_1_52_billion_parameters(full_stage1):
    cfg, _, unet1 = full_stage1
    _, unet2 = fake_unet(cfg.stage2.unet, cfg.num_frames)
    n1, n2 = _params(unet1), _params(unet2)
    assert abs(n1 - 1.52e9) < 0.01e9, n1  # SVD-XT's UNet: 1.52 B
    # The stages differ only in conv_in (8 vs 17 input channels, 3x3 into 320) and the first
    # layer of add_embedding (768 vs 512 inputs into 4 x 320): count that by hand.
    width, emb = cfg.stage1.unet.block_out_channels[0], 4 * cfg.stage1.unet.block_out_channels[0]
    expected = (cfg.stage1.unet.vector_dim - cfg.stage2.unet.vector_dim) * emb \
        - (cfg.stage2.unet.in_channels - cfg.stage1.unet.in_channels) * width * 9
    assert n1 - n2 == expected


def _module_flops(unet: nn.Module) -> tuple[list[int], list]:
    """Independent count from module shapes: conv / linear / attention, via forward hooks."""
    total = [0]

    def conv(m, inputs, out):
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear(m, inputs, out):
        total[0] += 2 * out.numel() * m.in_features

    def attention(m, args, kwargs, out):
        q = args[0] if args else kwargs["hidden_states"]  # [N, L, C]
        kv = kwargs.get("encoder_hidden_states")
        s = (q if kv is None else kv).shape[1]
        total[0] += 2 * 2 * q.shape[0] * q.shape[1] * s * m.inner_dim  # QK^T and PV

    handles = []
    for m in unet.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            handles.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear))
        elif isinstance(m, Attention):
            handles.append(m.register_forward_hook(attention, with_kwargs=True))
    return total, handles


def test_stage1_step_flops_match_a_per_module_count(full_stage1):
    cfg, mode, unet = full_stage1
    total, handles = _module_flops(unet)
    try:
        with mode:
            inputs = unet.sample_inputs(2, cfg.stage1.resolution // cfg.latent_factor)  # CFG batch, 64x64
            cost = count_forward(unet, inputs, "stage1.unet_step", "")
    finally:
        for h in handles:
            h.remove()
    assert cost.flops == total[0]
    assert 30e12 < cost.flops < 50e12  # ~40.6 TFLOP: sanity on the order of magnitude
    assert cost.flops_by_op["aten._scaled_dot_product_flash_attention_for_cpu"] > 0  # attention was counted
    assert cost.weight_bytes == 2 * cost.params


def test_linear_flops_and_traffic_by_hand():
    with FakeTensorMode():
        lin = nn.Linear(8, 4)
        cost = count_forward(lin, {"input": torch.zeros(3, 8)}, "linear", "[3, 8]")
    assert cost.flops == 2 * 3 * 8 * 4
    # addmm reads bias (4), input (24), weight (32) and writes the output (12), 2 bytes each
    assert cost.traffic_bytes == 2 * (4 + 24 + 32 + 12)


def test_bounds_take_the_slower_of_compute_and_weight_reads():
    compute_bound = Cost("a", "", params=1, flops=int(H100_SXM.fp16_flops), weight_bytes=2, calls=2)
    b = compute_bound.bounds(H100_SXM)
    assert b["lower_bound_fp16_s"] == pytest.approx(2.0)
    assert b["lower_bound_fp8_s"] == pytest.approx(2.0 * H100_SXM.fp16_flops / H100_SXM.fp8_flops)
    memory_bound = Cost("b", "", params=1, flops=1, weight_bytes=int(H100_SXM.hbm_bytes_per_s))
    assert memory_bound.bounds(H100_SXM)["lower_bound_fp16_s"] == pytest.approx(1.0)
