"""The tiny pipeline directories, the text conditioning each family's transformer gets, and the media decoding
(pixel space, and the VAE path with tiny AutoencoderKL / AutoencoderKLWan)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, CLIPTextModelWithProjection, T5EncoderModel, UMT5EncoderModel

from longrl.flow.families import family_of
from longrl.flow.media import MediaDecoder
from longrl.flow.text import TextEncoder
from longrl.flow.tiny import main as tiny_main

CPU = torch.device("cpu")
PROMPTS = ["a photo of a red car", "two blue benches left of a green apple"]


def _tokens(tokenizer_dir):
    """PROMPTS as the tiny tokenizers give them at the tiny encoders' length (16)."""
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    return tokenizer(PROMPTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")


def test_the_tiny_pipeline_has_the_diffusers_layout(tmp_path, capsys):
    assert tiny_main(["--family", "sd3", "--out", str(tmp_path / "sd3"), "--seed", "3"]) == 0
    index = json.loads((tmp_path / "sd3/model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["transformer"] == ["diffusers", "SD3Transformer2DModel"]
    assert {"text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3"} <= set(index)
    assert str(tmp_path / "sd3") in capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "sd3/tokenizer"))
    ids = tokenizer("a red car")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red car"


def test_sd3_conditioning_joins_the_clip_features_and_appends_t5(tiny_pipeline):
    """As SD3's pipeline: CLIP penultimate states joined on features, zero-padded to joint_attention_dim, T5 states
    appended on the sequence; the pooled vector is the two CLIP projections joined. Checked against each encoder
    run on its own."""
    model_dir = tiny_pipeline("sd3")
    got = TextEncoder("sd3", model_dir, CPU, joint_dim=16).encode(PROMPTS)
    clips, pooled = [], []
    for encoder, tokenizer in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
        model = CLIPTextModelWithProjection.from_pretrained(str(model_dir / encoder))
        ids = _tokens(model_dir / tokenizer)["input_ids"]
        out = model(input_ids=ids, output_hidden_states=True)
        clips.append(out.hidden_states[-2])
        pooled.append(out.text_embeds)
    t5 = T5EncoderModel.from_pretrained(str(model_dir / "text_encoder_3"))
    t5_ids = _tokens(model_dir / "tokenizer_3")["input_ids"]
    expected = torch.cat([torch.cat(clips, -1), t5(input_ids=t5_ids).last_hidden_state], dim=1)
    assert got.tokens.shape == (2, 32, 16) and got.pooled.shape == (2, 8)
    assert torch.allclose(got.tokens, expected, atol=1e-6)
    assert torch.allclose(got.pooled, torch.cat(pooled, -1), atol=1e-6)


def test_sd3_without_t5_pads_and_zero_fills(tiny_pipeline, tmp_path):
    """A released SD3 runs without its T5 encoder: CLIP features are padded to the transformer's width and the T5
    part is zeros of the configured length."""
    import shutil

    model_dir = shutil.copytree(tiny_pipeline("sd3"), tmp_path / "no_t5")
    shutil.rmtree(model_dir / "text_encoder_3")
    got = TextEncoder("sd3", model_dir, CPU, joint_dim=24, max_length=5).encode(PROMPTS)
    assert got.tokens.shape == (2, 16 + 5, 24)
    assert got.tokens[:, :, 16:].abs().max() == 0 and got.tokens[:, 16:].abs().max() == 0
    assert got.tokens[:, :16, :16].abs().max() > 0


def test_wan_conditioning_is_umt5_zeroed_past_each_prompt(tiny_pipeline):
    model_dir = tiny_pipeline("wan")
    got = TextEncoder("wan", model_dir, CPU, joint_dim=16).encode(PROMPTS)
    batch = _tokens(model_dir / "tokenizer")
    hidden = UMT5EncoderModel.from_pretrained(str(model_dir / "text_encoder"))(**batch).last_hidden_state
    lengths = batch["attention_mask"].sum(1)
    assert lengths[0] < 16  # the first prompt leaves zeroed positions
    assert got.pooled is None and got.tokens.shape == (2, 16, 16)
    for row, length in enumerate(lengths.tolist()):
        assert torch.allclose(got.tokens[row, :length], hidden[row, :length], atol=1e-6)
        assert got.tokens[row, length:].abs().sum() == 0


def test_pixel_space_and_vae_decoding(tiny_pipeline):
    """Pixel space: the latents are the media. With vae/: the family's scaling is undone before the VAE's decoder
    (SD3: / scaling_factor + shift_factor; Wan: * latents_std + latents_mean), and sizes map through its factors."""
    pixels_dir = tiny_pipeline("sd3")
    flow = family_of(pixels_dir)
    decoder = MediaDecoder(flow, pixels_dir, flow.load(pixels_dir / "transformer"), CPU)
    latents = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]).view(1, 3, 1, 2)
    assert decoder.latent_size(1, 8, 8) == (1, 8, 8)
    assert torch.equal(decoder(latents), torch.tensor([0.0, 0.0, 0.5, 0.75, 1.0, 1.0]).view(1, 3, 1, 2))
    for family, frames, size in (("sd3", 1, (1, 4, 4)), ("wan", 5, (3, 4, 4))):
        model_dir = tiny_pipeline(family, vae=True)
        flow = family_of(model_dir)
        decoder = MediaDecoder(flow, model_dir, flow.load(model_dir / "transformer"), CPU)
        assert decoder.latent_size(frames, 8, 8) == size
        latents = torch.randn(flow.latent_shape(flow.load(model_dir / "transformer"), 2, *size),
                              generator=torch.Generator().manual_seed(0))
        vae, config = decoder.vae, decoder.vae.config
        if family == "sd3":
            raw = vae.decode(latents / config.scaling_factor + config.shift_factor).sample
        else:
            view = (1, config.z_dim, 1, 1, 1)
            raw = vae.decode(latents * torch.tensor(config.latents_std).view(view)
                             + torch.tensor(config.latents_mean).view(view)).sample
        media = decoder(latents)
        assert media.shape == (2, 3, 8, 8) if family == "sd3" else media.shape == (2, 3, frames, 8, 8)
        assert torch.allclose(media, ((raw.clamp(-1, 1) + 1) / 2), atol=1e-6)
        with pytest.raises(ValueError, match="multiple of the VAE's scale factor 2"):
            decoder.latent_size(frames, 7, 8)
    with pytest.raises(ValueError, match="num_frames - 1 must be a multiple of the VAE's temporal factor 2"):
        decoder.latent_size(4, 8, 8)


def test_a_directory_that_is_not_a_pipeline_is_named(tmp_path, tiny_pipeline):
    with pytest.raises(FileNotFoundError, match="must be a diffusers pipeline directory"):
        family_of(tmp_path)
    vae_dir = tiny_pipeline("sd3", vae=True)
    flow = family_of(vae_dir)
    (tmp_path / "transformer").mkdir()
    with pytest.raises(ValueError, match="has no vae/ and its transformer has 4 input channels"):
        MediaDecoder(flow, tmp_path, flow.load(vae_dir / "transformer"), CPU)
