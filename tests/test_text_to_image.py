"""Text -> image -> views: the tiny text-to-image pipeline end to end, a saved pipeline folder
loaded back the way a real SD folder is, and the errors for bad --t2i folders."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hi3d import cli
from hi3d.engine.errors import InvalidInput
from hi3d.engine.text_to_image import (
    PROMPT_SUFFIX,
    TextToImageParams,
    generate_image,
    load_pipeline,
    tiny_pipeline,
)

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return tiny_pipeline()


def test_seed_decides_the_image_and_the_prompt_gets_the_suffix(tiny):
    params = TextToImageParams("a wooden chair", seed=3, steps=2)
    assert params.full_prompt == "a wooden chair" + PROMPT_SUFFIX
    a, b = generate_image(tiny, params, False), generate_image(tiny, params, False)
    c = generate_image(tiny, TextToImageParams("a wooden chair", seed=4, steps=2), False)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert a.image.mode == "RGB" and a.background == "as generated"


def test_a_saved_pipeline_folder_loads_locally_and_gives_the_same_image(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "sd")  # the layout of an SD 1.x folder: model_index.json + components
    loaded = load_pipeline(str(tmp_path / "sd"), CPU, torch.float32)
    params = TextToImageParams("a red mug", seed=1, steps=2)
    assert np.array_equal(np.asarray(generate_image(tiny, params, False).image),
                          np.asarray(generate_image(loaded, params, False).image))


def test_alpha_goes_on_white():
    from hi3d.engine.text_to_image import _on_white

    raw = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    raw.paste((10, 20, 30, 255), (2, 2, 6, 6))
    image, how = _on_white(raw, remove_background=True)
    arr = np.asarray(image)
    assert how == "alpha" and arr[0, 0].tolist() == [255, 255, 255] and arr[3, 3].tolist() == [10, 20, 30]


@pytest.mark.parametrize("bad", [dict(prompt=" "), dict(prompt="x" * 1001), dict(prompt="a", steps=0),
                                 dict(prompt="a", guidance=float("nan")), dict(prompt="a", size=100)])
def test_params_refuse_bad_values(bad):
    with pytest.raises(InvalidInput):
        TextToImageParams(**bad)


def test_prompt_to_views_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["generate", "--prompt", "a wooden chair", "--t2i", "tiny", "--out", str(out),
                     "--steps", "1", "--seed", "2"]) == 0
    assert "--t2i tiny" in capsys.readouterr().err  # says the image is from random weights
    assert Image.open(out / "input.png").size == (64, 64)
    for stage, size in (("stage1", 64), ("stage2", 128)):
        pngs = sorted((out / stage).glob("[0-9]*.png"))
        assert len(pngs) == 16 and Image.open(pngs[0]).size == (size, size)


def test_tiny_prompt_to_mesh_end_to_end(tmp_path, capsys, monkeypatch):
    """Without weights the views are noise, so --mesh reconstructs the demo object (and says
    so): the mesh must be that object, textured, beside the prompt's image and views; the
    reconstruction alone runs on --threads, and the caller's thread count comes back."""
    import trimesh

    import hi3d.engine.recon as recon
    from hi3d.engine.recon.demo import DEMO_SHAPE, demo_object
    from hi3d.engine.recon.quality import chamfer_distance
    from hi3d.engine.recon.shapes import SHAPES

    threads_seen = []

    def reconstruct(*args, **kwargs):
        threads_seen.append(torch.get_num_threads())
        return real_reconstruct(*args, **kwargs)

    real_reconstruct = recon.reconstruct
    monkeypatch.setattr(recon, "reconstruct", reconstruct)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's; the reconstruction asks for one (two would crawl on a loaded CI machine)
    out = tmp_path / "out"
    try:
        assert cli.main(["generate", "--prompt", "a wooden chair", "--t2i", "tiny", "--out", str(out),
                         "--steps", "1", "--mesh", "--recon-preset", "test", "--interp", "0",
                         "--texture-size", "64", "--threads", "1"]) == 0
        assert threads_seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "demo object" in capsys.readouterr().err
    assert Image.open(out / "input.png").size == (64, 64)
    assert len(list((out / "stage2").glob("[0-9]*.png"))) == 16
    assert len(list((out / "mesh_views").glob("[0-9]*.png"))) == 16
    mesh = trimesh.load(out / "mesh.glb", force="mesh")
    assert mesh.visual.material.baseColorTexture.size == (64, 64)
    # The test preset is coarse (Chamfer ~0.035 here), so: nearer the demo object than any other shape
    # (20k samples: the nearest other shape is ~0.06, far outside the sampling noise).
    to_demo = chamfer_distance(mesh, demo_object(), num_points=20_000)
    others = {name: chamfer_distance(mesh, shape.mesh(64), num_points=20_000)
              for name, shape in SHAPES.items() if name != DEMO_SHAPE}
    assert to_demo < 0.75 * min(others.values()), (to_demo, others)


def _error(argv, capsys) -> str:
    assert cli.main(argv) == 2
    return capsys.readouterr().err


def test_bad_t2i_folders_and_arguments_exit_2(tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "model_index.json" in _error(["generate", "--prompt", "a cup", "--t2i", str(empty), *out], capsys)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
         "safety_checker": [None, None]}))
    assert "unet" in _error(["generate", "--prompt", "a cup", "--t2i", str(partial), *out], capsys)
    assert "not a directory" in _error(["generate", "--prompt", "a cup", "--t2i", str(tmp_path / "no"), *out], capsys)
    assert "--t2i" in _error(["generate", "--prompt", "a cup", *out], capsys)
    img = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(img)
    assert "--prompt" in _error(["generate", str(img), "--prompt", "a cup", "--t2i", "tiny", *out], capsys)
    assert not (tmp_path / "out").exists()


def _tiny_sdxl():
    """An SDXL pipeline of a few channels (two text encoders, the pooled + time-id conditioning)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from hi3d.engine.text_to_image import TINY_MAX_TOKENS, tiny_tokenizer

    tok = tiny_tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=TINY_MAX_TOKENS, projection_dim=32, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
        norm_num_groups=32)
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**text)), tokenizer=tok,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text)), tokenizer_2=tok, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"))


def test_an_sdxl_folder_loads_as_sdxl_and_gives_the_same_image(tmp_path):
    with torch.random.fork_rng(devices=[]):
        sdxl = _tiny_sdxl()
    sdxl.set_progress_bar_config(disable=True)
    sdxl.save_pretrained(tmp_path / "sdxl")  # model_index.json + unet, vae, text_encoder(_2), tokenizer(_2), scheduler
    loaded = load_pipeline(str(tmp_path / "sdxl"), CPU, torch.float32)
    assert type(loaded).__name__ == "StableDiffusionXLPipeline"
    params = TextToImageParams("a red mug", seed=1, steps=2, size=64)
    want, got = generate_image(sdxl, params, False).image, generate_image(loaded, params, False).image
    assert got.size == (64, 64) and np.array_equal(np.asarray(want), np.asarray(got))
