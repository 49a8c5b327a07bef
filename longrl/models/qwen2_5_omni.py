"""Qwen2.5-Omni's thinker (``Qwen2_5OmniThinkerForConditionalGeneration``): text, images, video and audio in, text out.

The thinker is what RL trains; the talker and token2wav (speech output) are never loaded. A thinker directory
(``qwen2_5_omni_thinker``) is loaded as it is; a full ``qwen2_5_omni`` checkpoint directory gives its thinker (the
``thinker.`` weights; the speech modules' weights are left unread).

Its vision tower and patch layout are Qwen2.5-VL's, so images and video are handled as in the Qwen-VL families
(:class:`~longrl.models._qwen_vl.QwenVLAdapter`); positions are the thinker's own ``get_rope_index``, which already
continues text after a video at the video's last temporal position (the published rule).

Audio is its own content item (``{'type': 'audio'}`` after the video: ``<|audio_bos|>``, one ``<|AUDIO|>`` per audio
feature, ``<|audio_eos|>``); ``use_audio_in_video`` stays False. Why not interleave: interleaving alternates the video's
and the audio's tokens in 2-second chunks, so a video's features would no longer fill one contiguous run (the
embedding cache stores, and vLLM takes, a video's features as one run) and each row's feature stream would have to be
cut and re-stitched chunk by chunk exactly as the processor lays the tokens out. As separate items each medium is one
run whose features are its tower's output in order, and ``get_rope_index`` positions the audio right after the video
(1-D positions, as for any separate audio item).

Audio features: the thinker's forward takes audio only as raw ``input_features`` and writes all of the call's audio
features over the audio placeholders of its ``input_ids``. Over a sequence shard that is wrong (a rank holds only
some placeholders, and would re-run the tower). :meth:`Qwen2_5OmniAdapter.patch_model` therefore lets the thinker take
precomputed audio features as ``mm_encoder_outputs["audio"]``, spliced like image and video features (and honour
``logits_to_keep``, which the stock thinker ignores; :func:`adapt_thinker`). It needs transformers >= 5.21, whose
thinker has a multimodal model under its LM head; older versions are refused at load. MR-SP stage 1 encodes each prompt's audio
once (:mod:`longrl.mrsp.audio`, chunks split over the SP group) and each rank's forward gets exactly the rows of the
placeholders in its block. A row's feature stream is its images', its video's, then its audio's features, the order
of its prompt.

Long audio: the processor's feature extractor pads every audio to its ``chunk_length`` and, by default, truncates
longer ones there (30 s in Whisper's extractor, 300 s in Omni's). :meth:`encode` asks for no truncation, so an
hour-long video keeps its whole audio track, and keeps only the audio's real frames (no padding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import transformers
from torch.nn.utils.rnn import pad_sequence
from transformers import (
    AutoConfig,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    WhisperFeatureExtractor,
)
from transformers.initialization import no_init_weights
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni

from longrl.models._encoder_outputs import accept_encoder_outputs
from longrl.models._qwen_vl import QwenVLAdapter, _count_content_items
from longrl.models.input_keys import InputKeys
from longrl.models.registry import finish_empty_model
from longrl.models.tiny import TINY_TEXT_SIZES, TINY_WINDOWED_VISION, tiny_text_config_kwargs
from longrl.models.tokenizer import (
    CHAT_TEMPLATE,
    IMAGE_PAD,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    QwenTokenIds,
    build_tokenizer,
)

if TYPE_CHECKING:
    from longrl.data.video import DecodedVideo

AUDIO_TOKEN = "<|AUDIO|>"
AUDIO_BOS = "<|audio_bos|>"
AUDIO_EOS = "<|audio_eos|>"
# The special tokens Qwen2.5-Omni's processor reads by name. Its image/video tokens are Qwen's (the real checkpoints
# spell them <|IMAGE|>/<|VIDEO|>, <|vision_bos|>/<|vision_eos|>; only the ids matter); the audio ones are appended after
# Qwen's ids, so the other families' tiny tokenizers and models are unchanged.
NAMED_TOKENS = {
    "image_token": IMAGE_PAD,
    "video_token": VIDEO_PAD,
    "vision_bos_token": VISION_START,
    "vision_eos_token": VISION_END,
    "audio_token": AUDIO_TOKEN,
    "audio_bos_token": AUDIO_BOS,
    "audio_eos_token": AUDIO_EOS,
}
_TEXT_ITEM = "{%- elif item['type'] == 'text' -%}"
# Qwen's ChatML template plus audio items.
CHAT_TEMPLATE_WITH_AUDIO = CHAT_TEMPLATE.replace(
    _TEXT_ITEM,
    "{%- elif item['type'] == 'audio' -%}{{- '" + AUDIO_BOS + AUDIO_TOKEN + AUDIO_EOS + "' -}}" + _TEXT_ITEM,
)

# A row's audio inputs as the processor gives them: ``(audios, mel, frames)`` log-mel features right-padded to the
# longest audio, and the ``(audios, frames)`` mask of the real frames.
AUDIO_FRAMES = "input_features"
AUDIO_MASK = "feature_attention_mask"
# Whisper-style log-mel features as Qwen2.5-Omni computes them: 16 kHz audio, one frame per 10 ms.
SAMPLING_RATE = 16_000
HOP_LENGTH = 160
# Tiny audio tower: 32 mel bins; chunks of 2 * n_window = 20 frames (0.2 s), so a second of audio spans five chunks
# and MR-SP really splits audio between ranks (the real tower: 128 bins, chunks of 200 frames).
_TINY_MEL_BINS = 32
_TINY_N_WINDOW = 10


class Qwen2_5OmniAdapter(QwenVLAdapter):
    family: ClassVar[str] = "qwen2_5_omni"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_5_omni_thinker", "qwen2_5_omni")
    supports_audio: ClassVar[bool] = True
    audio_sampling_rate: ClassVar[int] = SAMPLING_RATE
    # Its prompts also carry the video's seconds per grid and the audio items, which a cached grid does not rebuild.
    serves_embedding_cache: ClassVar[bool] = False
    input_keys: ClassVar[InputKeys] = InputKeys(
        towers={**QwenVLAdapter.input_keys.towers, AUDIO_FRAMES: "audio"},
        positions={**QwenVLAdapter.input_keys.positions, AUDIO_MASK: "audio", "video_second_per_grid": "video"},
        padded=(AUDIO_FRAMES, AUDIO_MASK))
    media_token_attributes: ClassVar[tuple[str, ...]] = (*QwenVLAdapter.media_token_attributes, "audio_token_id",
                                                         "audio_start_token_id", "audio_end_token_id")
    # The audio tower, like the vision tower, attends within chunks (cu_seqlens).
    varlen_attention_configs: ClassVar[tuple[str, ...]] = ("vision_config", "audio_config")
    model_class = Qwen2_5OmniThinkerForConditionalGeneration
    processor_class = Qwen2_5OmniProcessor

    # ----- tiny model ----------------------------------------------------------------------------------------------
    def tiny_tokenizer(self) -> PreTrainedTokenizerFast:
        return build_tokenizer(named_tokens=NAMED_TOKENS, chat_template=CHAT_TEMPLATE_WITH_AUDIO)

    def tiny_processor(self, tokenizer: PreTrainedTokenizerFast, **parts: Any) -> ProcessorMixin:
        extractor = WhisperFeatureExtractor(feature_size=_TINY_MEL_BINS, sampling_rate=SAMPLING_RATE,
                                            hop_length=HOP_LENGTH, n_fft=400, chunk_length=30)
        return super().tiny_processor(tokenizer, feature_extractor=extractor, chat_template=CHAT_TEMPLATE_WITH_AUDIO)

    def tiny_config(self, token_ids: QwenTokenIds) -> Qwen2_5OmniThinkerConfig:
        audio_ids = self.tiny_tokenizer().convert_tokens_to_ids
        audio = {
            "num_mel_bins": _TINY_MEL_BINS,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "n_window": _TINY_N_WINDOW,
            "output_dim": TINY_TEXT_SIZES["hidden_size"],
            # At the default 0.02 the sinusoidal position embedding drowns what the convolutions pass on, and a tiny
            # tower's features would depend on the audio's length only, not on what it sounds like.
            "initializer_range": 0.2,
        }
        return Qwen2_5OmniThinkerConfig(
            # Untied, as the thinker's own top-level config has it (its text config's default says otherwise).
            text_config={**tiny_text_config_kwargs(token_ids, mrope=True), "tie_word_embeddings": False},
            vision_config=dict(TINY_WINDOWED_VISION),
            audio_config=audio,
            image_token_index=token_ids.image_token_id,
            video_token_index=token_ids.video_token_id,
            audio_token_index=audio_ids(AUDIO_TOKEN),
            audio_start_token_id=audio_ids(AUDIO_BOS),
            audio_end_token_id=audio_ids(AUDIO_EOS),
            # Read by get_rope_index; the real thinker configs state them too.
            vision_start_token_id=token_ids.vision_start_token_id,
            vision_end_token_id=token_ids.vision_end_token_id,
            dtype="float32",
        )

    # ----- loading -------------------------------------------------------------------------------------------------
    def load_model(self, model_dir: str | Path, dtype: torch.dtype = torch.float32,
                   trust_remote_code: bool = False) -> Qwen2_5OmniThinkerForConditionalGeneration:
        """The thinker, always with transformers' own classes: no code of the directory runs, trusted or not."""
        config = _thinker_config(model_dir)
        if config is not None:  # the full model: its thinker's weights are the ``thinker.`` ones
            model = self.model_class.from_pretrained(str(model_dir), config=config, dtype=dtype,
                                                     key_mapping={r"^thinker\.": ""})
        else:
            model = self.model_class.from_pretrained(str(model_dir), dtype=dtype)
        return self.prepare_model(model)

    def build_empty_model(self, model_dir: str | Path, dtype: torch.dtype,
                          trust_remote_code: bool = False) -> Qwen2_5OmniThinkerForConditionalGeneration:
        """The thinker of ``model_dir`` (a thinker or a full model directory) without its weights."""
        config = _thinker_config(model_dir)
        if config is None:
            config = AutoConfig.from_pretrained(str(model_dir))
        with no_init_weights():
            model = self.model_class._from_config(config, dtype=dtype)
        return self.prepare_model(finish_empty_model(model, self.load_generation_config(model_dir)))

    def patch_model(self, model: Qwen2_5OmniThinkerForConditionalGeneration
                    ) -> Qwen2_5OmniThinkerForConditionalGeneration:
        """Its own positions are already the published rule; the thinker takes precomputed features and honours
        ``logits_to_keep`` (:func:`adapt_thinker`)."""
        adapt_thinker(model.model)
        return model

    # ----- prompts -------------------------------------------------------------------------------------------------
    def count_audio_tokens(self, num_samples: int) -> int:
        """Audio tokens of ``num_samples`` samples: one log-mel frame per started hop, then the tower's two stride-2
        reductions. (For audio longer than the feature extractor's ``chunk_length`` the processor drops a partial last
        frame, so this may count one token more there.)"""
        frames = -(-num_samples // HOP_LENGTH)
        return ((frames - 1) // 2 + 1 - 2) // 2 + 1

    def encode(
        self, processor: ProcessorMixin, messages: list[dict[str, Any]], video: DecodedVideo | None,
        images: Sequence[np.ndarray] = (), audio: np.ndarray | None = None,
    ) -> dict[str, torch.Tensor]:
        """:meth:`QwenVLAdapter.encode` plus ``audio`` (mono float32 samples at 16 kHz, for the one audio item).

        Adds ``input_features`` ``(1, mel, frames)`` and ``feature_attention_mask`` ``(1, frames)`` holding the audio's
        real frames only, and ``video_second_per_grid`` for a video (seconds per temporal patch, from its sampled fps).
        """
        num_audio_items = _count_content_items(messages, "audio")
        if num_audio_items != (audio is not None):
            given = "one audio" if audio is not None else "no audio"
            raise ValueError(f"messages hold {num_audio_items} {{'type': 'audio'}} item(s) but {given} was given")
        extra: dict[str, Any] = {}
        if video is not None:  # Omni's processor reads the frame rate here, not from the video metadata
            extra["fps"] = float(video.sampled_fps)
        if audio is not None:
            if audio.ndim != 1 or audio.dtype != np.float32 or audio.size == 0:
                raise ValueError(f"audio must be non-empty mono float32 samples, got shape {audio.shape} {audio.dtype}")
            extra.update(audio=[audio], audio_kwargs={"truncation": False})
        batch = self._encode_with(processor, messages, video, images, extra)
        if audio is not None:
            frames = int(batch[AUDIO_MASK].sum())
            batch[AUDIO_FRAMES] = batch[AUDIO_FRAMES][..., :frames]
            batch[AUDIO_MASK] = batch[AUDIO_MASK][..., :frames]
        return batch

    # ----- MR-SP ---------------------------------------------------------------------------------------------------
    def audio_encoder(self, model: torch.nn.Module) -> OmniAudioEncoder:
        return OmniAudioEncoder(model)

    def media_placeholder_ids(self, model: torch.nn.Module) -> tuple[int, ...]:
        config = model.config
        return (config.image_token_id, config.video_token_id, config.audio_token_id)

    def encoder_kwargs(self, model: torch.nn.Module, features: torch.Tensor,
                       placeholder_tokens: torch.Tensor) -> dict[str, Any]:
        """Each medium's rows as that encoder's output. Video and audio entries are passed even when empty, so the
        features stay in this rank's autograd graph (see :func:`~longrl.mrsp.prefill.sharded_response_scores`);
        an image entry only when the block holds image placeholders, as for Qwen-VL."""
        config = model.config
        outputs = {}
        for medium, token_id in (("image", config.image_token_id), ("video", config.video_token_id),
                                 ("audio", config.audio_token_id)):
            rows = placeholder_tokens == token_id
            if medium != "image" or bool(rows.any()):
                outputs[medium] = BaseModelOutputWithPooling(pooler_output=(features[rows],))
        return {"mm_encoder_outputs": outputs}

    def position_ids(self, model: torch.nn.Module, tokens: dict[str, torch.Tensor],
                     vision: dict[str, torch.Tensor]) -> torch.Tensor:
        """3-D mrope ids ``(3, b, S)`` from the thinker's ``get_rope_index``: image and video grids, video seconds per
        grid, and each audio's frame count (its feature mask), as its own forward computes them."""
        mask = vision.get(AUDIO_MASK)
        positions, _ = model.model.get_rope_index(
            tokens["input_ids"], vision.get("image_grid_thw"), vision.get("video_grid_thw"), tokens["attention_mask"],
            use_audio_in_video=False, audio_seqlens=None if mask is None else mask.sum(-1),
            second_per_grids=vision.get("video_second_per_grid"))
        return positions


class OmniAudioEncoder:
    """The thinker's audio tower as MR-SP's :class:`~longrl.mrsp.audio.AudioEncoder`.

    Goes through the model's ``get_audio_features`` (registered with FSDP as a forward method, so a sharded tower
    gathers its parameters for the call), one padded batch of pieces per call.
    """

    def __init__(self, model: torch.nn.Module):
        audio = model.config.audio_config
        if audio.n_window % 2:
            raise ValueError(f"audio_config.n_window={audio.n_window} is odd: MR-SP splits audio between chunks, which "
                             "is exact only when every chunk boundary falls on a pooled pair (n_window even)")
        self.model = model
        self.chunk_frames = 2 * audio.n_window
        self._mel_bins = audio.num_mel_bins

    def __call__(self, pieces: Sequence[torch.Tensor]) -> torch.Tensor:
        lengths = torch.tensor([piece.shape[1] for piece in pieces], device=pieces[0].device)
        batch = pad_sequence([piece.T for piece in pieces], batch_first=True).transpose(1, 2)  # (k, mel, longest)
        mask = (torch.arange(batch.shape[2], device=batch.device) < lengths[:, None]).long()
        return self.model.get_audio_features(batch, feature_attention_mask=mask, return_dict=True).last_hidden_state

    def num_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.model.audio_tower._get_feat_extract_output_lengths(frames)[1]

    def dummy_inputs(self, device: torch.device) -> list[torch.Tensor]:
        return [torch.zeros(self._mel_bins, self.chunk_frames, device=device)]

    def row_audio(self, row: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        if AUDIO_FRAMES not in row:
            return []
        lengths = row[AUDIO_MASK].sum(-1).tolist()
        return [features[:, : int(length)] for features, length in zip(row[AUDIO_FRAMES], lengths)]


def _thinker_config(model_dir: str | Path) -> Qwen2_5OmniThinkerConfig | None:
    """The thinker's config where ``model_dir`` holds the full model (``qwen2_5_omni``: talker and token2wav too), else
    None (a thinker directory, whose config.json is the thinker's). Refuses transformers older than 5.21."""
    if not hasattr(modeling_qwen2_5_omni, "Qwen2_5OmniThinkerModel"):
        raise RuntimeError(f"Qwen2.5-Omni needs transformers >= 5.21 (the thinker's multimodal model, "
                           f"Qwen2_5OmniThinkerModel, which longrl drives); this is transformers "
                           f"{transformers.__version__}: `pip install -U 'transformers>=5.21,<6'`")
    config = AutoConfig.from_pretrained(str(model_dir))
    return config.thinker_config if config.model_type == "qwen2_5_omni" else None


def adapt_thinker(thinker: torch.nn.Module) -> None:
    """Make ``thinker`` (a ``Qwen2_5OmniThinkerModel``, the part under the LM head) serve longrl's forwards:

    - take precomputed audio, image and video features as ``mm_encoder_outputs`` (written over their placeholders
      before the stock forward runs; raw ``input_features`` / pixels still run the towers there);
    - honour ``logits_to_keep`` as the other families do (an int: the last N positions, 0: all; a tensor: those
      columns). The stock thinker applies its LM head to every position, which would give the log-prob passes
      logits for the whole prompt, the wrong columns, and the memory the rest of longrl avoids.
    """
    config = thinker.config
    accept_encoder_outputs(thinker, {"audio": config.audio_token_id, "image": config.image_token_id,
                                     "video": config.video_token_id})
    spliced_forward = thinker.forward

    def forward(logits_to_keep: int | torch.Tensor = 0, **kwargs: Any) -> Any:
        result = spliced_forward(**kwargs)
        kept = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        result.last_hidden_state = result.last_hidden_state[:, kept]
        return result

    thinker.forward = forward
