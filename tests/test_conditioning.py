"""The vector condition against an independent (numpy) transcription of sgm's embedders."""
import math

import numpy as np
import pytest
import torch

from hi3d.engine import conditioning as cond
from hi3d.engine.config import tiny
from hi3d.engine.models.unet import Hi3DUNet


def _sgm_emb(t: float, dim: int) -> np.ndarray:
    half = dim // 2
    freqs = np.exp(-math.log(10000) * np.arange(half, dtype=np.float64) / half)
    e = np.concatenate([np.cos(t * freqs), np.sin(t * freqs)])
    return np.concatenate([e, np.zeros(dim % 2)])


@pytest.mark.parametrize("a,elev", [(5.3, 0.0), (6.1, 30.7), (4.0, -10.0)])
def test_stage1_vector_matches_direct_transcription(a, elev):
    v = cond.stage1_vector(torch.tensor([a]), elev, 0.02)[0].double().numpy()
    direct = np.concatenate([[a], _sgm_emb(100 * a, 255), _sgm_emb(int(elev), 256), _sgm_emb(0.02, 256)])
    assert v.shape == (768,)
    np.testing.assert_allclose(v, direct, atol=2e-4)  # float32 sin/cos of arguments up to ~600
    assert v[255] == 0.0  # the odd-width aesthetic embedding is zero-padded


def test_stage2_vector_matches_direct_transcription():
    v = cond.stage2_vector(2, 20.0, 0.02)
    direct = np.concatenate([_sgm_emb(20, 256), _sgm_emb(0.02, 256)])
    assert v.shape == (2, 512)
    np.testing.assert_allclose(v[1].numpy(), direct, atol=1e-5)


def test_unet_takes_the_vector_through_label_emb():
    """Our wrapper's conditioning embedding = sinusoid(c_noise) MLP + Linear-SiLU-Linear(vector)."""
    unet = Hi3DUNet(tiny().stage1.unet).eval()
    net = unet.net
    c_noise = torch.tensor([0.3, -1.2])
    vector = cond.stage1_vector(torch.tensor([5.0, 6.0]), 15.0, 0.02)
    captured = {}
    net.time_embedding.register_forward_hook(lambda m, i, o: captured.__setitem__("t", o))
    net.add_embedding.register_forward_hook(lambda m, i, o: captured.__setitem__("v", o))
    with torch.no_grad():
        unet(**{**unet.sample_inputs(2, 8), "c_noise": c_noise, "vector": vector})
        l1, l2 = net.add_embedding.linear_1, net.add_embedding.linear_2
        label = l2(torch.nn.functional.silu(l1(vector)))
        t1, t2 = net.time_embedding.linear_1, net.time_embedding.linear_2
        t_emb = torch.stack([torch.from_numpy(_sgm_emb(float(c), 32)).float() for c in c_noise])
        time = t2(torch.nn.functional.silu(t1(t_emb)))
    torch.testing.assert_close(captured["v"], label)
    torch.testing.assert_close(captured["t"], time, atol=1e-5, rtol=1e-5)


def test_depth_channels_space_to_depth_and_normalisation():
    disp = torch.arange(36.0).reshape(1, 6, 6) * 2 + 5
    out = cond.depth_channels(disp, (2, 2), 3)
    assert out.shape == (1, 9, 2, 2)
    assert out.min() == 0.0 and out.max() == 1.0
    # channel (h0, w0) at latent (i, j) = normalised pixel (3i + h0, 3j + w0)
    norm = (disp - disp.min()) / (disp.max() - disp.min())
    assert torch.allclose(out[0, 1 * 3 + 2, 1, 0], norm[0, 3 + 1, 0 + 2])


def test_aesthetic_crop_is_the_official_window_at_224():
    img = torch.linspace(-1, 1, 384).expand(1, 3, 224, 384).clone()
    px = cond.aesthetic_pixels(img, 224)
    assert px.shape == (1, 3, 224, 224)
    x01 = img[..., 80:304] * 0.5 + 0.5
    expected = (x01 - 0.48145466) / 0.26862954
    assert torch.allclose(px[0, 0], expected[0, 0], atol=1e-5)


def test_depth_input_size_matches_official_formula():
    assert cond.depth_input_size(1024, 2.6666) == 384
    assert cond.depth_input_size(128, 2.6666) == 32


@pytest.mark.parametrize("shape,size", [((1, 3, 512, 512), 224), ((2, 3, 64, 48), 28), ((1, 3, 20, 20), 28)])
def test_antialiased_resize_matches_diffusers_transcription_of_kornia(shape, size):
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = cond.resize_antialiased(x, (size, size))
    assert ours.shape == (shape[0], 3, size, size)
    torch.testing.assert_close(ours, _resize_with_antialiasing(x, (size, size)), atol=1e-6, rtol=0)
