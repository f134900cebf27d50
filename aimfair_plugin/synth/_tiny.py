"""A tiny, randomly initialised Stable Diffusion pipeline built offline.

For smoke tests of the diffusers path (ours and users'): it has the real
architecture (CLIP text encoder, conditional U-Net, VAE, DDIM scheduler) at a
few hundred kilobytes of weights, saves with ``save_pretrained`` and loads
back with ``AutoPipelineForText2Image.from_pretrained``. Its images are noise;
it exists to prove the plumbing, not to draw faces.
"""

import json
import tempfile
from pathlib import Path


def _byte_level_vocab():
    """The 256 byte-level symbols of CLIP's BPE, each also with the end-of-word suffix."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    symbols, extra = [], 0
    for b in range(256):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols + [s + "</w>" for s in symbols]


def _tokenizer(folder):
    # transformers 5 ignores CLIPTokenizer(vocab_file=...), so write the files and load the folder.
    from transformers import CLIPTokenizer

    tokens = _byte_level_vocab() + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77), len(tokens)


def build_tiny_text_to_image_pipeline(path=None, *, seed=0):
    """Build (and with ``path``, save) a tiny random ``StableDiffusionPipeline``.

    Parameters
    ----------
    path : str or Path, optional
        Folder to ``save_pretrained`` into.
    seed : int, default=0
        Seed of the random weights.

    Returns
    -------
    pipeline : diffusers.StableDiffusionPipeline
        Generates 32 x 32 images on the CPU in a fraction of a second.

    Examples
    --------
    >>> from aimfair_plugin.synth import build_tiny_text_to_image_pipeline
    >>> pipeline = build_tiny_text_to_image_pipeline()
    >>> type(pipeline).__name__
    'StableDiffusionPipeline'
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, vocab_size = _tokenizer(Path(tmp) / "tokenizer")
    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        layers_per_block=1,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=vocab_size,
            max_position_embeddings=77,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    if path is not None:
        pipeline.save_pretrained(str(path))
    return pipeline
