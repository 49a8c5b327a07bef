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
from transformers import CLIPTextConfig, PreTrainedTokenizerFast

from longrl.flow.families import FLOW_FAMILIES, family_for_model_name, get_family
from longrl.flow.family import TextPart

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


def _encoder(part: TextPart, tokenizer: PreTrainedTokenizerFast, width: int, projection: int) -> torch.nn.Module:
    """A tiny random encoder of ``part``'s class whose token ids agree with ``tokenizer``."""
    common = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
              "eos_token_id": tokenizer.eos_token_id}
    if part.role == "clip":
        config = CLIPTextConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                                num_attention_heads=2, max_position_embeddings=_CLIP_LENGTH, projection_dim=projection,
                                bos_token_id=tokenizer.bos_token_id, **common)
    else:  # T5Config or UMT5Config
        config = part.model_class.config_class(
            d_model=width, d_kv=width // 2, d_ff=2 * width, num_layers=2, num_heads=2,
            relative_attention_num_buckets=8, decoder_start_token_id=tokenizer.pad_token_id, **common)
    return part.model_class(config)


def build_tiny_pipeline(out_dir: str | Path, family: str, seed: int = 0, vae: bool = False) -> Path:
    """Write a tiny ``family`` pipeline directory (seeded: the same weights on every machine) and return it."""
    flow, out = get_family(family), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = flow.tiny_config()
    index: dict[str, list[str] | str] = {"_class_name": flow.pipeline_class}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if vae:
            autoencoder = flow.tiny_vae()
            autoencoder.save_pretrained(str(out / "vae"))
            config["in_channels"] = config["out_channels"] = flow.latent_channels(autoencoder)
            index["vae"] = ["diffusers", type(autoencoder).__name__]
        transformer = flow.model_class(**config)
        transformer.save_pretrained(str(out / "transformer"))
        index["transformer"] = ["diffusers", flow.model_class.__name__]
        text_width, pooled_width = flow.text_dims(transformer)
        clips = sum(part.role == "clip" for part in flow.text_parts)
        for part in flow.text_parts:
            tokenizer = build_tokenizer(part.role)
            # SD3's CLIP features are joined along the feature axis: each CLIP gets an equal share of the width,
            # and their projections an equal share of the pooled width.
            width = text_width // clips if part.role == "clip" else text_width
            projection = (pooled_width or 0) // max(clips, 1)
            _encoder(part, tokenizer, width, projection).save_pretrained(str(out / part.encoder))
            tokenizer.save_pretrained(str(out / part.tokenizer))
            index[part.encoder] = ["transformers", part.model_class.__name__]
            index[part.tokenizer] = ["transformers", type(tokenizer).__name__]
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longrl.flow.tiny", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--family", choices=sorted(FLOW_FAMILIES))
    which.add_argument("--family-for", metavar="MODEL_NAME",
                       help="print the family a hub ID or path names (nothing is built), or fail when none does")
    parser.add_argument("--out", help="the directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae", action="store_true", help="add a tiny VAE (latent space) instead of pixel space")
    args = parser.parse_args(argv)
    if args.family_for is not None:
        family = family_for_model_name(args.family_for)
        print(family or f"no generator family in {args.family_for!r}")
        return 0 if family else 1
    if args.out is None:
        parser.error("--out is required with --family")
    print(build_tiny_pipeline(args.out, args.family, args.seed, args.vae))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
