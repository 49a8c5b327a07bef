"""Qwen2.5-Omni's thinker on rows with sound: a video's audio track (or a row's own audio file) becomes audio tokens
whose features reach the language model; a silent video is a bad row; the tiny tokenizer leaves the other families'
ids alone; a full ``qwen2_5_omni`` checkpoint directory gives its thinker.

The videos are real mp4 files (H.264 + AAC, written with PyAV here); the model is the real thinker code at tiny sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen2_5OmniConfig

from longrl.config.loader import load_config
from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.audio import load_audio
from longrl.data.dataset import VideoQADataset, collate_left_padded
from longrl.data.rows import DatasetRowError
from longrl.embeds.cache import EmbeddingCache
from longrl.models import adapter_for_model_dir, get_adapter
from longrl.models.qwen2_5_omni import AUDIO_BOS, AUDIO_EOS, AUDIO_TOKEN, HOP_LENGTH
from longrl.models.tokenizer import build_tokenizer
from longrl.mrsp import build_sp_groups, encode_row_videos
from longrl.mrsp.audio import append_row_audio, encode_row_audio
from longrl.protocol import TOKEN_KEYS
from longrl.workers.logprob import response_log_probs
from longrl.workers.vision_inputs import merge_vision_inputs, placeholder_tokens, position_inputs

from audio_video import noise, tone, write_audio, write_video

FAMILY = "qwen2_5_omni"
REPO = Path(__file__).resolve().parents[2]
FRAMES = np.random.default_rng(0).integers(0, 256, (8, 56, 56, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def omni(tiny_model_dir):
    model_dir = tiny_model_dir(FAMILY)
    adapter = get_adapter(FAMILY)
    return model_dir, adapter, adapter.load_processor(model_dir), adapter.load_model(model_dir).eval()


def _dataset(tmp_path: Path, rows: list[dict], model_dir: Path, family: str = FAMILY, **overrides) -> VideoQADataset:
    files = tmp_path / "rows.jsonl"
    files.write_text("".join(json.dumps(row) + "\n" for row in rows))
    adapter = get_adapter(family)
    data = DataConfig(train_files=str(files), prompt_key="question", video_key="video", max_pixels=12544,
                      format_prompt=str(REPO / "examples/format_prompt/r1v.jinja"), use_audio=True, **overrides)
    return VideoQADataset(str(files), data, RolloutConfig(num_video_frames=4), adapter,
                          adapter.load_processor(model_dir))


def _row(video: str, **extra) -> dict:
    return {"question": "What sound plays while the video runs?", "answer": "A", "video": video, **extra}


def _batched(inputs: dict) -> dict:
    return {key: value[None] if key in TOKEN_KEYS else value for key, value in inputs.items()}


def test_omni_tokens_come_after_the_shared_ones_and_leave_other_tokenizers_alone(omni):
    _, _, processor, model = omni
    base = build_tokenizer()
    omni_vocab = processor.tokenizer.get_vocab()
    assert {token: omni_vocab[token] for token in base.get_vocab()} == base.get_vocab()
    appended = [len(base), len(base) + 1, len(base) + 2]
    assert [omni_vocab[token] for token in (AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS)] == appended
    config = model.config
    assert [config.audio_token_id, config.audio_start_token_id, config.audio_end_token_id] == appended
    assert config.get_text_config().vocab_size == len(base) + 3
    assert get_adapter("qwen2_5_vl").tiny_tokenizer().get_vocab() == base.get_vocab()


def test_a_videos_audio_track_becomes_audio_tokens_whose_features_reach_the_model(omni, tmp_path):
    model_dir, adapter, _, model = omni
    write_video(tmp_path / "clip.mp4", FRAMES, 4, tone(2.0, 440.0))
    inputs = _dataset(tmp_path, [_row("clip.mp4")], model_dir)[0]["inputs"]
    wave = load_audio(tmp_path / "clip.mp4", adapter.audio_sampling_rate)
    assert 2.0 <= len(wave) / 16_000 < 2.1  # the whole track (AAC adds its priming samples)
    # Only the audio's own frames are kept: one log-mel frame per started hop of 10 ms.
    assert inputs["input_features"].shape == (1, 32, -(-len(wave) // HOP_LENGTH))
    assert bool(inputs["feature_attention_mask"].all())
    ids = inputs["input_ids"]
    config = model.config
    audio, video = ids == config.audio_token_id, ids == config.video_token_id
    with torch.no_grad():
        audio_features = model.get_audio_features(inputs["input_features"], inputs["feature_attention_mask"],
                                                  return_dict=True).last_hidden_state
        video_features = torch.cat(model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"],
                                                            return_dict=True).pooler_output)
    # As many placeholders as the feature extractor + audio tower give features; one run, between its delimiters,
    # after the video's run.
    count = adapter.count_audio_tokens(len(wave))
    assert int(audio.sum()) == audio_features.shape[0] == count
    where = audio.nonzero().flatten()
    assert where.tolist() == list(range(int(where[0]), int(where[0]) + count))
    assert ids[where[0] - 1] == config.audio_start_token_id and ids[where[-1] + 1] == config.audio_end_token_id
    assert int(video.nonzero().max()) < int(where[0])
    # The language model's input holds the tower outputs at their placeholders, text embeddings elsewhere.
    captured = {}
    # transformers >= 5.2x nests the text model as model.model.language_model; 5.17's model.model is the text model.
    text_model = getattr(model.model, "language_model", model.model)
    hook = text_model.register_forward_pre_hook(
        lambda _module, _args, kwargs: captured.update(kwargs), with_kwargs=True)
    try:
        with torch.no_grad():
            model(**_batched(inputs))
    finally:
        hook.remove()
    embeds = captured["inputs_embeds"][0]
    assert torch.equal(embeds[audio], audio_features)
    assert torch.equal(embeds[video], video_features)
    assert torch.equal(embeds[~(audio | video)], model.get_input_embeddings()(ids[~(audio | video)]))


def test_log_probs_follow_the_audio_and_precomputed_features_score_the_same(omni, tmp_path):
    """Same video, different sound of the same length: the scores differ; same sound: they do not. The actor's
    unsharded path (stage-1 features of the video then the audio, spliced through ``encoder_kwargs``) scores like
    the raw forward, also beside a row whose shorter audio is padded in the batch."""
    model_dir, adapter, _, model = omni
    write_video(tmp_path / "a.mp4", FRAMES, 4, tone(2.0, 440.0))
    write_video(tmp_path / "b.mp4", FRAMES, 4, noise(2.0, seed=1))
    write_video(tmp_path / "c.mp4", FRAMES, 4, tone(2.0, 440.0))
    write_video(tmp_path / "d.mp4", FRAMES, 4, noise(1.5, seed=2))
    dataset = _dataset(tmp_path, [_row(f"{name}.mp4") for name in "abcd"], model_dir)
    samples = [dataset[index] for index in range(4)]
    for other in samples[1:]:
        assert torch.equal(other["inputs"]["pixel_values_videos"], samples[0]["inputs"]["pixel_values_videos"])
    assert samples[1]["inputs"]["input_ids"].shape == samples[0]["inputs"]["input_ids"].shape
    prompts = collate_left_padded(samples, dataset.tokenizer.pad_token_id)
    responses = torch.from_numpy(np.random.default_rng(2).integers(10, 900, (1, 6))).expand(4, -1)
    tokens = {"input_ids": torch.cat([prompts["input_ids"], responses], 1),
              "attention_mask": torch.cat([prompts["attention_mask"], torch.ones_like(responses)], 1)}
    rows = list(prompts["vision_inputs"])
    assert rows[3]["input_features"].shape[-1] < rows[0]["input_features"].shape[-1]  # padded when merged
    with torch.no_grad():
        raw = response_log_probs(model, tokens, merge_vision_inputs(rows, adapter.input_keys), responses).log_probs
        groups = build_sp_groups(1)
        features = append_row_audio(
            encode_row_videos(adapter.video_encoder(model), rows, groups, torch.device("cpu")),
            encode_row_audio(adapter.audio_encoder(model), rows, groups, torch.device("cpu")))
        kwargs = {**position_inputs(rows, adapter.input_keys), **adapter.encoder_kwargs(
            model, torch.cat(features), placeholder_tokens(tokens["input_ids"], adapter.media_placeholder_ids(model)))}
        precomputed = response_log_probs(model, tokens, kwargs, responses).log_probs
    torch.testing.assert_close(raw[0], raw[2], atol=1e-6, rtol=0)
    assert (raw[0] - raw[1]).abs().max() > 1e-2
    torch.testing.assert_close(precomputed, raw, atol=1e-5, rtol=0)


def test_a_row_can_name_its_own_audio_file(omni, tmp_path):
    model_dir, adapter, processor, _ = omni
    write_video(tmp_path / "v.mp4", FRAMES, 4, tone(2.0, 440.0))
    write_audio(tmp_path / "speech.m4a", noise(1.0, seed=3))
    inputs = _dataset(tmp_path, [_row("v.mp4", sound="speech.m4a")], model_dir, audio_key="sound")[0]["inputs"]
    wave = load_audio(tmp_path / "speech.m4a", adapter.audio_sampling_rate)
    expected = processor.feature_extractor(wave, sampling_rate=16_000, truncation=False, return_attention_mask=True,
                                           return_tensors="pt")["input_features"][..., :-(-len(wave) // HOP_LENGTH)]
    assert torch.equal(inputs["input_features"], expected)


def test_audio_rows_without_audio_fail_naming_the_row_and_file_or_are_skipped(omni, tmp_path, tiny_model_dir):
    model_dir = omni[0]
    write_video(tmp_path / "loud.mp4", FRAMES, 4, tone(1.0, 220.0))
    write_video(tmp_path / "silent.mp4", FRAMES, 4, None)
    rows = [_row("loud.mp4"), _row("silent.mp4"), _row("loud.mp4", audio="missing.wav")]
    with pytest.raises(DatasetRowError, match=r"rows\.jsonl row 1 \(video .*silent\.mp4\): no audio track: cannot read "
                                              r"audio from '.*silent\.mp4': the file has no audio track \(streams: "
                                              r"video\).*data\.audio_key='audio'"):
        _dataset(tmp_path, rows, model_dir)
    dataset = _dataset(tmp_path, rows, model_dir, on_bad_row="skip")
    assert len(dataset) == 1 and dataset.rows[0].audio.endswith("loud.mp4")
    assert dict(dataset.skip_reasons()) == {"no audio track": 1, "unreadable audio": 1}
    assert "missing.wav" in dataset.skipped[1].reason and "does not exist" in dataset.skipped[1].reason
    # A family without an audio tower refuses audio rows by name.
    with pytest.raises(DatasetRowError, match="data.use_audio=true but model family 'qwen2_5_vl' takes no audio"):
        _dataset(tmp_path, rows[:1], tiny_model_dir("qwen2_5_vl"), family="qwen2_5_vl")


def test_overlong_filter_counts_audio_tokens(omni, tmp_path):
    """The filter sizes the audio from the container's stated duration (no decoding), so it may miss the AAC encoder's
    few priming samples: exact to a token or two, where the audio alone is 50 tokens."""
    model_dir = omni[0]
    write_video(tmp_path / "clip.mp4", FRAMES, 4, tone(2.0, 440.0))
    full = int(_dataset(tmp_path, [_row("clip.mp4")], model_dir)[0]["inputs"]["input_ids"].shape[-1])
    assert len(_dataset(tmp_path, [_row("clip.mp4")], model_dir, max_prompt_length=full)) == 1
    with pytest.raises(ValueError, match="no usable rows.*overlong prompt"):
        _dataset(tmp_path, [_row("clip.mp4")], model_dir, max_prompt_length=full - 3)


def test_a_full_omni_checkpoint_directory_gives_its_thinker(omni, tmp_path):
    model_dir, adapter, _, model = omni
    full = tmp_path / "full"
    Qwen2_5OmniConfig(thinker_config=model.config.to_dict()).save_pretrained(full)
    weights = {f"thinker.{name}": value for name, value in load_file(model_dir / "model.safetensors").items()}
    weights["talker.codec_head.weight"] = torch.ones(2, 2)  # the speech side's weights are left unread
    save_file(weights, full / "model.safetensors", metadata={"format": "pt"})
    assert adapter_for_model_dir(full) is adapter
    thinker = adapter.load_model(full)
    assert type(thinker) is type(model)
    expected = model.state_dict()
    assert thinker.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[name]) for name, value in thinker.state_dict().items())


def test_the_embedding_cache_refuses_the_omni_family_at_start(omni, tmp_path):
    """Omni prompts carry the video's seconds per grid and audio items, which a cached grid does not rebuild: a run
    asking for the cache must stop before training, naming the keys to drop."""
    cfg = load_config([f"worker.actor.model.model_path={omni[0]}", f"data.cache_dir={tmp_path / 'cache'}",
                       "worker.actor.model.freeze_vision_tower=true"])
    with pytest.raises(ValueError, match=r"does not serve model family 'qwen2_5_omni': run without data\.cache_dir"):
        EmbeddingCache.from_config(cfg, get_adapter(FAMILY))
