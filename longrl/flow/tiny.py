"""Tiny diffusers-layout generator directories, built locally and seeded, for tests and the example scripts' smoke runs.

``build_tiny_pipeline(out_dir, "sd3")`` writes what a released pipeline directory has, at toy sizes and with random
weights: ``transformer/`` (the real diffusers class), the family's text encoders (SD3: two CLIP encoders with
projection and a T5 encoder; Wan: UMT5) each with a tokenizer trained here on a short corpus of prompt words (byte
level, so any text encodes), optionally ``vae/``, and ``model_index.json``. Without a VAE the transformer works in pixel
space (3 channels; the media are its latents), which is what keeps CPU tests fast. Nothing is downloaded::

    python -m longrl.flow.tiny --family sd3 --out /tmp/tiny-sd3 [--vae] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import CLIPTextConfig, PreTrainedTokenizerFast, T5Config, UMT5Config

from longrl.flow.families import FLOW_FAMILIES
from longrl.flow.text import TEXT_PARTS

__all__ = ["build_tiny_pipeline", "build_tokenizer", "main"]

_CORPUS = (
    "a photo of a red car and a blue bench", "a green apple left of a yellow banana",
    "a white dog above a black cat", "an orange ball below a purple cup", "two brown bears right of a pink chair",
    "a gray bird, a cake, a clock, a bottle and a person on a table", "three zebras next to four giraffes",
    "the sky at sunset over the sea, a bright scene, a dark night", "0 1 2 3 4 5 6 7 8 9 , . ! ?",
)
_VOCAB_SIZE = 320
_CLIP_LENGTH = 16  # the tiny CLIP's positions (77 in the released ones)
_T5_LENGTH = 16  # the tiny T5 tokenizers' model_max_length (caps the pipeline's default T5 length)
_PIPELINES = {"sd3": "StableDiffusion3Pipeline", "wan": "WanPipeline"}


def build_tokenizer(role: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE with CLIP's (start + end, padded with the end token) or T5's (end, ``<pad>``) special tokens."""
    specials = ["<|startoftext|>", "<|endoftext|>"] if role == "clip" else ["<pad>", "</s>", "<unk>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(_CORPUS, trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    ids = {token: tokenizer.token_to_id(token) for token in specials}
    if role == "clip":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<|startoftext|> $A <|endoftext|>", special_tokens=list(ids.items()))
        return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|startoftext|>",
                                       eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                       model_max_length=_CLIP_LENGTH)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", ids["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=_T5_LENGTH)


def _encoder(cls: type, role: str, tokenizer: PreTrainedTokenizerFast, width: int, projection: int) -> torch.nn.Module:
    """A tiny random encoder of ``cls`` whose token ids agree with ``tokenizer``."""
    common = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
              "eos_token_id": tokenizer.eos_token_id}
    if role == "clip":
        config = CLIPTextConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                                num_attention_heads=2, max_position_embeddings=_CLIP_LENGTH, projection_dim=projection,
                                bos_token_id=tokenizer.bos_token_id, **common)
    else:
        config_cls = UMT5Config if cls.__name__.startswith("UMT5") else T5Config
        config = config_cls(d_model=width, d_kv=width // 2, d_ff=2 * width, num_layers=2, num_heads=2,
                            relative_attention_num_buckets=8, decoder_start_token_id=tokenizer.pad_token_id, **common)
    return cls(config)


def _tiny_vae(family: str) -> torch.nn.Module:
    """A tiny VAE of the family's class: 2x spatial (and, for Wan, 2x temporal) compression into 4 channels."""
    vae_class = FLOW_FAMILIES[family].vae_class
    if family == "sd3":
        return vae_class(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                         layers_per_block=1, sample_size=16, scaling_factor=1.5305, shift_factor=0.0609)
    return vae_class(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
                     latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[1.5, 0.8, 1.0, 2.0],
                     scale_factor_temporal=2, scale_factor_spatial=2)


def build_tiny_pipeline(out_dir: str | Path, family: str, seed: int = 0, vae: bool = False) -> Path:
    """Write a tiny ``family`` pipeline directory (seeded: the same weights on every machine) and return it."""
    if family not in FLOW_FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FLOW_FAMILIES)}")
    flow, out = FLOW_FAMILIES[family], Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = flow.tiny_config()
    text_width = config.get("joint_attention_dim", config.get("text_dim"))
    index: dict[str, list[str] | str] = {"_class_name": _PIPELINES[family]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if vae:
            autoencoder = _tiny_vae(family)
            autoencoder.save_pretrained(str(out / "vae"))
            config["in_channels"] = config["out_channels"] = autoencoder.config.get(
                "latent_channels", autoencoder.config.get("z_dim"))
            index["vae"] = ["diffusers", type(autoencoder).__name__]
        transformer = flow.model_class(**config)
        transformer.save_pretrained(str(out / "transformer"))
        index["transformer"] = ["diffusers", flow.model_class.__name__]
        clips = sum(role == "clip" for *_, role in TEXT_PARTS[family])
        for encoder, tokenizer_dir, cls, role in TEXT_PARTS[family]:
            tokenizer = build_tokenizer(role)
            # SD3's CLIP features are joined along the feature axis: each CLIP gets an equal share of the width,
            # and their projections an equal share of the pooled width.
            width = text_width // clips if role == "clip" else text_width
            projection = (config.get("pooled_projection_dim") or 0) // max(clips, 1)
            _encoder(cls, role, tokenizer, width, projection).save_pretrained(str(out / encoder))
            tokenizer.save_pretrained(str(out / tokenizer_dir))
            index[encoder] = ["transformers", cls.__name__]
            index[tokenizer_dir] = ["transformers", type(tokenizer).__name__]
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longrl.flow.tiny", description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", required=True, choices=sorted(FLOW_FAMILIES))
    parser.add_argument("--out", required=True, help="the directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae", action="store_true", help="add a tiny VAE (latent space) instead of pixel space")
    args = parser.parse_args(argv)
    print(build_tiny_pipeline(args.out, args.family, args.seed, args.vae))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
