"""Text -> one object image, the front stage of text-to-3D (Hi3D paper, Section 5.5, Fig. 5).

A diffusers text-to-image pipeline (Stable Diffusion 1.x / 2.x or SDXL, any folder that
`AutoPipelineForText2Image.from_pretrained` reads) is loaded from a local folder, never from
the Hub. The prompt gets a suffix that asks for what Hi3D was trained on: one centred object
on a white background. The result goes on white: by its alpha channel when the pipeline
gives one, else by rembg when it is installed, else as generated (and the caller is told).

`tiny` builds a seeded Stable Diffusion pipeline with a few channels from config: a
byte-level tokenizer made in code, a 2-layer CLIP text encoder, a 2-block UNet and VAE,
random weights. It shows the path working anywhere (its images are noise, not objects).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from hi3d.engine.errors import InvalidInput

PROMPT_SUFFIX = ", one object centred in the frame, full view, on a plain white background"
NEGATIVE_PROMPT = "multiple objects, cropped, cluttered background, shadow, text, watermark"
MAX_PROMPT_CHARS = 1000
MAX_STEPS = 200
TINY = "tiny"
TINY_SEED = 0  # the tiny pipeline's random weights
TINY_SIZE = 64  # its image size in pixels
TINY_MAX_TOKENS = 256  # byte-level tokens are many: a prompt and its suffix fit without truncation
TINY_STEPS = 2
FOLDER_STEPS = 30

Progress = Callable[[str, int, int], None]  # (stage, step, total)


@dataclass(frozen=True)
class TextToImageParams:
    """What a caller chooses per text-to-image generation; checked once, on construction."""

    prompt: str
    seed: int = 0
    steps: int = FOLDER_STEPS  # sampler steps of the text-to-image pipeline
    guidance: float = 7.5  # classifier-free guidance scale
    size: int | None = None  # image side in pixels; None: the pipeline's default
    suffix: str = PROMPT_SUFFIX
    negative_prompt: str = NEGATIVE_PROMPT

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InvalidInput("prompt is empty")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise InvalidInput(f"prompt has {len(self.prompt)} characters, more than {MAX_PROMPT_CHARS}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise InvalidInput(f"t2i steps must be in [1, {MAX_STEPS}], got {self.steps}")
        if not 0.0 <= self.guidance <= 50.0:  # also refuses NaN
            raise InvalidInput(f"guidance must be in [0, 50], got {self.guidance}")
        if not 0 <= self.seed < 2**63:
            raise InvalidInput(f"seed must be in [0, 2**63), got {self.seed}")
        if self.size is not None and (self.size % 8 or not 64 <= self.size <= 2048):
            raise InvalidInput(f"t2i size must be a multiple of 8 in [64, 2048], got {self.size}")

    @property
    def full_prompt(self) -> str:
        return self.prompt.strip() + self.suffix


@dataclass(frozen=True)
class TextImage:
    image: Image.Image  # RGB on white: the Hi3D input
    raw: Image.Image  # what the text-to-image pipeline returned
    background: str  # "alpha", "rembg" or "as generated"


def default_steps(source: str) -> int:
    return TINY_STEPS if source == TINY else FOLDER_STEPS


def check_folder(folder: Path) -> dict:
    """A diffusers pipeline folder: model_index.json and a subfolder per component it lists."""
    if not folder.is_dir():
        raise InvalidInput(f"--t2i {folder}: not a directory (a diffusers pipeline folder, or `tiny`)")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise InvalidInput(f"--t2i {folder}: missing model_index.json (not a diffusers pipeline folder)")
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as e:
        raise InvalidInput(f"--t2i {index_path}: unreadable ({e})") from None
    missing = [name for name, value in index.items() if not name.startswith("_") and isinstance(value, list)
               and value[0] is not None and not (folder / name).is_dir()]
    if missing:
        raise InvalidInput(f"--t2i {folder}: missing component folder(s) {', '.join(missing)} "
                           "that model_index.json lists")
    return index


def load_pipeline(source: str, device: torch.device, dtype: torch.dtype):
    """`tiny` or a local diffusers folder -> a text-to-image pipeline on `device`."""
    if source == TINY:
        return tiny_pipeline().to(device)
    from diffusers import AutoPipelineForText2Image

    folder = Path(source)
    check_folder(folder)
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise InvalidInput(f"--t2i {folder}: not a loadable text-to-image pipeline ({e})") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def tiny_tokenizer():
    """A byte-level tokenizer (every byte one token, no merges): any prompt encodes, no files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    specials = ["<|startoftext|>", "<|endoftext|>"]
    for s in specials:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=specials[1]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=specials[0], eos_token=specials[1],
                                   pad_token=specials[1], unk_token=specials[1],
                                   model_max_length=TINY_MAX_TOKENS)


def tiny_pipeline():
    """A seeded Stable Diffusion pipeline with a few channels, built from config."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):  # diffusers/transformers draw their init from the global RNG
        torch.manual_seed(TINY_SEED)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=TINY_SIZE // 2, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
        )
        vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=TINY_MAX_TOKENS, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ))
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                  steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _on_white(raw: Image.Image, remove_background: bool) -> tuple[Image.Image, str]:
    if raw.mode in ("RGBA", "LA") and raw.getextrema()[-1][0] < 255:
        rgba = raw.convert("RGBA")
        how = "alpha"
    elif remove_background:
        try:
            import rembg
        except ImportError:
            return raw.convert("RGB"), "as generated"
        rgba = rembg.remove(raw).convert("RGBA")
        how = "rembg"
    else:
        return raw.convert("RGB"), "as generated"
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB"), how


def generate_image(pipe, params: TextToImageParams, remove_background: bool = True,
                   progress: Progress | None = None) -> TextImage:
    """Prompt -> one object image on white. A seeded CPU generator: the same starting noise on any device."""
    def on_step(_pipe, i: int, _t, kwargs: dict) -> dict:
        if progress:
            progress("t2i", i + 1, params.steps)
        return kwargs

    size = {} if params.size is None else {"height": params.size, "width": params.size}
    out = pipe(prompt=params.full_prompt, negative_prompt=params.negative_prompt, num_inference_steps=params.steps,
               guidance_scale=params.guidance, generator=torch.Generator().manual_seed(params.seed),
               callback_on_step_end=on_step, output_type="pil", **size)
    raw = out.images[0]
    image, how = _on_white(raw, remove_background)
    return TextImage(image=image, raw=raw, background=how)
