"""The VILA family (NVILA, NVILA-Lite, LongVILA): a SigLIP tower, an MLP projector that folds neighbouring patches
into one token, and a Qwen2 LLM, each in its own sub-directory of a ``llava_llama`` checkpoint.

A checkpoint directory, as VILA writes it::

    config.json     model_type "llava_llama"; llm_cfg, vision_tower_cfg, mm_projector_cfg (the parts' configs),
                    mm_vision_select_layer / mm_vision_select_feature (which tower layer leaves it), video_encoder, ...
    llm/            a Qwen2ForCausalLM and its tokenizer, VILA's media tokens (``<image>``, ``<vila/video>``) added
    vision_tower/   a SiglipVisionModel and its SiglipImageProcessor
    mm_projector/   the projector's weights (``layers.*``); its type is ``mm_projector_cfg.mm_projector_type``
    *.py            VILA's own (remote) code, in directories that carry it (config.json ``auto_map``)

:meth:`VilaAdapter.load_model` loads such a directory through ``AutoModel.from_pretrained(trust_remote_code=True)``
when it carries its code and ``worker.actor.model.trust_remote_code`` is true (refused, naming the key, when false),
else builds the parts from the sub-directories with transformers' own classes and this
module's projector; either way it finds the LLM, the tower and the projector (``llm``, ``vision_tower``,
``mm_projector``, VILA's names) and puts them in :class:`VilaModel`, which gives them longrl's forward contract.

Prompt. The chat is rendered with the template config.json's ``chat_template`` names (VILA's code installs it on the
tokenizer), else the one saved in ``llm/``; each message's content is one string. VILA writes a video as one
``<vila/video>`` token at the start of the user text and, when it embeds the prompt, replaces it by each frame's
projected features followed by the embedding of the video encoder's end tokens ("\\n"). Here that expansion happens in
the token ids instead: per frame, one ``<vila/video>`` per feature row, then the ids of the end tokens (ordinary text
tokens, which the LLM embeds exactly as VILA embeds them). The prompt's length is then known from its ids, and the
features fill their placeholders like any family's, so the sharded prefill and the HF rollout take them unchanged.
Positions are the LLM's own 1-D ones.

MR-SP. The tower attends within one frame and the projector folds patches within one frame, so a frame is encoded
on its own: a video's pixels are laid out one frame per row with grid ``(frames, 1, 1)``, and stage 1 deals frames to
the SP group like Qwen's temporal slices, for any frame count. The tower and the projector together are the
family's "vision tower" (:class:`FrameEncoder`): ``freeze_vision_tower`` freezes both, as it freezes Qwen-VL's tower
with its patch merger, so a frozen tower's stage-1 features are all the update needs.

Refused at load, with the reason: S2 / dynamic-S2 towers and temporal-pooling video encoders (NVILA-8B's multi-scale
and pooled frame features), ``pad`` frame preprocessing, ``patch`` feature selection (SigLIP has no class token).
Rows with images are refused by the data layer (``supports_images`` is False).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipImageProcessor,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.image_processing_utils import BaseImageProcessor
from transformers.initialization import no_init_weights
from transformers.modeling_outputs import BaseModelOutputWithPooling, CausalLMOutputWithPast
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from longrl.models.input_keys import InputKeys
from longrl.models.registry import ModelAdapter, finish_empty_model
from longrl.models.remote_code import remote_code_files, require_trust
from longrl.models.tiny import random_model, tiny_text_config_kwargs
from longrl.models.tokenizer import QwenTokenIds, build_tokenizer

if TYPE_CHECKING:
    import numpy as np

    from longrl.data.video import DecodedVideo

__all__ = ["FrameEncoder", "MultimodalProjector", "VilaAdapter", "VilaConfig", "VilaModel", "VilaProcessor",
           "build_tiny_vila", "save_vila_parts"]

# VILA's media tokens, as its tokenizer carries them.
MEDIA_TOKENS = {"image": "<image>", "video": "<vila/video>"}
# VILA's video encoder that keeps every frame (features, then its end tokens); the temporal-pooling one is refused.
_BASIC_VIDEO_ENCODER = "BasicVideoEncoder"
_DEFAULT_VIDEO_ENCODER = json.dumps({"_target_": f"llava.model.encoders.{_BASIC_VIDEO_ENCODER}"})
# Projector types -> how many patches per side fold into one token.
_FOLD = {"mlp_downsample": 2, "mlp_downsample_2x2_fix": 2, "mlp_downsample_3x3_fix": 3}
# The parts :class:`VilaModel` needs, by VILA's attribute names.
_PARTS = ("llm", "vision_tower", "mm_projector")
# VILA's Qwen2 chat template (string contents; a default system turn unless the chat starts with one).
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages if message['content'] is not none -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)
# config.json's ``chat_template`` names one of VILA's templates, which VILA's code installs on the tokenizer at load.
_CHAT_TEMPLATES = {"qwen2": CHAT_TEMPLATE}
# Tiny parts: a 70 px tower of 14 px patches is 5 x 5 patches, which neither fold (2 or 3) divides, so the tiny
# projectors pad as the real 448 px NVILA one does (32 patches folded by 3). Three layers, the second's output leaves
# the tower (select layer -2), so gradients reach tower layers as in the real models.
_TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                "image_size": 70, "patch_size": 14, "vision_use_head": False}


class VilaConfig(PreTrainedConfig):
    """config.json of a ``llava_llama`` checkpoint: the parts' configs plus how frames leave the tower.

    ``video_token_id`` / ``image_token_id`` are not in VILA's file (its tokenizer holds them); :meth:`VilaAdapter.
    load_model` sets them from the tokenizer, since the rollout and the feature splice read them from the config.
    """

    model_type = "llava_llama"
    # The parts' configs are built in __post_init__ rather than declared through transformers' sub-config specs:
    # those arrived in 5.20, and the vLLM environment pins an older 5.x. This plain mapping is what both read.
    sub_configs = {"llm_cfg": AutoConfig, "vision_tower_cfg": AutoConfig}

    llm_cfg: dict | PreTrainedConfig | None = None
    vision_tower_cfg: dict | PreTrainedConfig | None = None
    mm_projector_cfg: dict | None = None
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: str = "cls_patch"
    image_aspect_ratio: str = "resize"
    video_encoder: str = _DEFAULT_VIDEO_ENCODER
    chat_template: str | None = None
    video_token_id: int | None = None
    image_token_id: int | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        self.llm_cfg = _part_config(self.llm_cfg, "qwen2")
        self.vision_tower_cfg = _part_config(self.vision_tower_cfg, "siglip_vision_model")
        super().__post_init__(**kwargs)

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> PreTrainedConfig:
        """The LLM's config: the object whose attention implementation MR-SP and the rollout switch."""
        return self.llm_cfg


def _part_config(value: dict | PreTrainedConfig | None, default_type: str) -> PreTrainedConfig:
    """A part's config as config.json holds it (a dict naming its ``model_type``, else ``default_type``) as the
    transformers config object its model class takes."""
    if isinstance(value, PreTrainedConfig):
        return value
    fields = dict(value or {})
    return AutoConfig.for_model(fields.pop("model_type", default_type), **fields)


@dataclass(frozen=True)
class FrameLayout:
    """How a frame becomes tokens: ``features`` rows from the tower and projector, between the video encoder's start
    and end texts (each tokenised; VILA's default is no start and "\\n" after every frame)."""

    image_size: int
    features: int
    start_text: str | None
    end_text: str | None

    @classmethod
    def of(cls, config: VilaConfig) -> FrameLayout:
        """The layout ``config`` describes; a configuration this adapter does not reproduce raises ``ValueError``."""
        unsupported = [f"{key}={getattr(config, key)!r}" for key in ("s2", "dynamic_s2") if getattr(config, key, False)]
        if config.image_aspect_ratio == "pad":
            unsupported.append("image_aspect_ratio='pad'")
        if config.mm_vision_select_feature != "cls_patch":
            unsupported.append(f"mm_vision_select_feature={config.mm_vision_select_feature!r} (SigLIP has no class "
                               "token; VILA's SigLIP checkpoints use 'cls_patch')")
        encoder = json.loads(config.video_encoder)
        if not encoder["_target_"].endswith(_BASIC_VIDEO_ENCODER):
            unsupported.append(f"video_encoder {encoder['_target_']} (only {_BASIC_VIDEO_ENCODER} keeps frames "
                               "independent)")
        if config.chat_template is not None and config.chat_template not in _CHAT_TEMPLATES:
            unsupported.append(f"chat_template {config.chat_template!r} (supported: {sorted(_CHAT_TEMPLATES)})")
        projector = config.mm_projector_cfg["mm_projector_type"]
        if projector not in _FOLD:
            unsupported.append(f"mm_projector_type {projector!r} (supported: {sorted(_FOLD)})")
        if unsupported:
            raise ValueError(f"VILA checkpoint not supported: {', '.join(unsupported)}")
        vision = config.vision_tower_cfg
        side = -(-(vision.image_size // vision.patch_size) // _FOLD[projector])
        return cls(vision.image_size, side * side, encoder.get("start_tokens"), encoder.get("end_tokens", "\n"))


class PatchFold(nn.Module):
    """VILA's downsample block: the square grid of a frame's patch features, zero-padded at the bottom and right to a
    multiple of ``factor``, becomes one feature per ``factor x factor`` block (the block's features concatenated
    row by row), blocks in row-major order."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        frames, count, channels = features.shape
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(f"{count} patch features per frame are not a square grid")
        pad = -side % self.factor
        grid = nn.functional.pad(features.view(frames, side, side, channels), (0, 0, 0, pad, 0, pad))
        blocks = (side + pad) // self.factor
        grid = grid.view(frames, blocks, self.factor, blocks, self.factor, channels).permute(0, 1, 3, 2, 4, 5)
        return grid.reshape(frames, blocks * blocks, self.factor**2 * channels)


class MultimodalProjector(nn.Module):
    """VILA's projector for the downsampling types, with VILA's module structure (``layers``: the fold, then the MLP)
    so its checkpoints load as they are."""

    def __init__(self, projector_type: str, mm_hidden_size: int, hidden_size: int):
        super().__init__()
        factor = _FOLD[projector_type]
        folded = factor**2 * mm_hidden_size
        if factor == 3:
            widened = 3 * mm_hidden_size
            layers = [PatchFold(3), nn.LayerNorm(folded), nn.Linear(folded, widened), nn.GELU(), nn.LayerNorm(widened),
                      nn.Linear(widened, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size)]
        else:
            layers = [PatchFold(2), nn.LayerNorm(folded), nn.Linear(folded, hidden_size), nn.GELU(),
                      nn.Linear(hidden_size, hidden_size)]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class VisionTower(nn.Module):
    """VILA's tower wrapper: ``vision_tower`` (a SiglipVisionModel) and the hidden layer whose patch features leave."""

    def __init__(self, vision_tower: SiglipVisionModel, select_layer: int):
        super().__init__()
        self.vision_tower = vision_tower
        self.select_layer = select_layer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(frames, 3, S, S)`` -> ``(frames, patches, C)``."""
        return self.vision_tower(images, output_hidden_states=True).hidden_states[self.select_layer]


class FrameEncoder(nn.Module):
    """The tower and the projector as one unit: frames -> their feature rows, frame after frame.

    This is the family's vision tower to the rest of longrl (frozen by ``freeze_vision_tower``, hooked to count
    encoded frames, kept alone for vLLM's features). Its modules are the model's own ``vision_tower`` and
    ``mm_projector``; :class:`VilaModel` keeps it out of its module tree, so weights keep VILA's names.
    """

    def __init__(self, vision_tower: nn.Module, mm_projector: nn.Module):
        super().__init__()
        self.vision_tower = vision_tower
        self.mm_projector = mm_projector

    def forward(self, pixels: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """``pixels`` ``(frames, 3, S, S)``, ``grid_thw`` one ``(frames, 1, 1)`` row per video -> ``(rows, hidden)``."""
        if int(grid_thw[:, 0].sum()) != pixels.shape[0] or bool((grid_thw[:, 1:] != 1).any()):
            raise ValueError(f"grid {grid_thw.tolist()} does not describe {pixels.shape[0]} frames, one per row")
        return self.mm_projector(self.vision_tower(pixels)).flatten(0, 1)


class VilaModel(nn.Module):
    """VILA's parts (``llm``, ``vision_tower``, ``mm_projector``) behind longrl's forward contract.

    ``forward`` embeds ``input_ids``, writes frame features over the ``<vila/video>`` placeholders (computed from
    ``pixel_values_videos`` here, or given precomputed as ``video_features``: MR-SP stage 1's, one row per placeholder
    of these ids) and runs the LLM; every other keyword (``logits_to_keep``, ``mrsp_layout``, ``shared_decode``, ...)
    goes to the LLM, whose attention receives them.
    """

    _no_split_modules: ClassVar[list[str]] = ["Qwen2DecoderLayer", "SiglipEncoderLayer"]

    def __init__(self, config: VilaConfig, llm: PreTrainedModel, vision_tower: nn.Module, mm_projector: nn.Module):
        super().__init__()
        config.llm_cfg = llm.config  # the text config is the LLM's own object (its attention reads it)
        self.config = config
        self.llm = llm
        self.vision_tower = vision_tower
        self.mm_projector = mm_projector
        layout = FrameLayout.of(config)
        self.image_size, self.frame_features = layout.image_size, layout.features
        # In a list, not registered: its modules are the two above, already in the tree under VILA's names.
        self._frame_encoder = [FrameEncoder(vision_tower, mm_projector)]

    @property
    def frame_encoder(self) -> FrameEncoder:
        return self._frame_encoder[0]

    @property
    def generation_config(self) -> GenerationConfig:
        """The LLM's: VILA keeps the generation config with the LLM (``llm/``), so setting it sets the LLM's, which
        is the one saved."""
        return self.llm.generation_config

    @generation_config.setter
    def generation_config(self, value: GenerationConfig) -> None:
        self.llm.generation_config = value

    def get_input_embeddings(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Checkpoint the LLM's decoder layers and the tower's encoder layers."""
        for part in (self.llm, self.vision_tower.vision_tower):
            part.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def get_video_features(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor,
                           return_dict: bool = True) -> BaseModelOutputWithPooling | torch.Tensor:
        """Frame features, one row per ``<vila/video>`` placeholder of the frames' tokens, in frame order."""
        pixels = pixel_values_videos.to(self.get_input_embeddings().weight.dtype)
        features = self.frame_encoder(pixels, grid_thw=video_grid_thw)
        return BaseModelOutputWithPooling(pooler_output=features) if return_dict else features

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                pixel_values_videos: torch.Tensor | None = None, video_grid_thw: torch.Tensor | None = None,
                video_features: torch.Tensor | None = None, **kwargs: Any) -> CausalLMOutputWithPast:
        """``video_grid_thw`` only accompanies pixels here (1-D positions need no grid; rows carry it for stage 1)."""
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
            if video_features is None and pixel_values_videos is not None:
                video_features = self.get_video_features(pixel_values_videos, video_grid_thw, return_dict=False)
            if video_features is not None:
                # Spliced even when empty (a sequence shard without placeholders): the features then stay in this
                # rank's autograd graph, so the backward of their all-gather runs on every rank.
                placeholders = input_ids == self.config.video_token_id
                if int(placeholders.sum()) != video_features.shape[0]:
                    raise ValueError(f"{int(placeholders.sum())} <vila/video> placeholders but "
                                     f"{video_features.shape[0]} video feature rows")
                inputs_embeds = inputs_embeds.masked_scatter(placeholders.unsqueeze(-1),
                                                             video_features.to(inputs_embeds.dtype))
        return self.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, **kwargs)


@dataclass
class VilaProcessor:
    """VILA's text and frame preprocessing: the LLM's tokenizer (with the media tokens), the tower's SigLIP image
    processor, and the checkpoint's :class:`FrameLayout` in token ids."""

    tokenizer: PreTrainedTokenizerBase
    image_processor: BaseImageProcessor
    frame_features: int
    frame_start_ids: tuple[int, ...]
    frame_end_ids: tuple[int, ...]

    @property
    def video_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(MEDIA_TOKENS["video"])

    @property
    def tokens_per_frame(self) -> int:
        return len(self.frame_start_ids) + self.frame_features + len(self.frame_end_ids)

    def frame_ids(self) -> list[int]:
        """One frame's token ids: start ids, a placeholder per feature row, end ids."""
        return [*self.frame_start_ids, *[self.video_token_id] * self.frame_features, *self.frame_end_ids]

    def save_pretrained(self, directory: str | Path) -> None:
        """The tokenizer under ``llm/`` and the image processor under ``vision_tower/``, where VILA keeps them."""
        self.tokenizer.save_pretrained(str(Path(directory) / "llm"))
        self.image_processor.save_pretrained(str(Path(directory) / "vision_tower"))


class VilaAdapter(ModelAdapter):
    family: ClassVar[str] = "vila"
    model_types: ClassVar[tuple[str, ...]] = ("llava_llama",)
    supports_video: ClassVar[bool] = True
    # Frames are decoded at multiples of SigLIP's patch under data.max_pixels; the image processor then resizes them to
    # the tower's square, so a checkpoint's tokens per frame are fixed. worker.rollout.tokens_per_frame only bounds
    # the decoded size, counted in 2 x 2 folds of 14 px patches.
    video_size_factor: ClassVar[int] = 14
    video_pixels_per_token: ClassVar[int] = 28 * 28
    input_keys: ClassVar[InputKeys] = InputKeys(towers={"pixel_values_videos": "video"},
                                                positions={"video_grid_thw": "video"})
    media_token_attributes: ClassVar[tuple[str, ...]] = ("image_token_id", "video_token_id")

    def build_tiny(self, out_dir: str | Path, seed: int = 0) -> Path:
        """A tiny NVILA-Lite (3 x 3 fold); :func:`build_tiny_vila` builds the other projector types."""
        return build_tiny_vila(out_dir, seed, "mlp_downsample_3x3_fix")

    def load_processor(self, model_dir: str | Path, trust_remote_code: bool = False) -> VilaProcessor:
        """The tokenizer of ``llm/`` (with the template config.json's ``chat_template`` names, as VILA's code installs
        it), the image processor of ``vision_tower/``, and the frame layout; transformers' own classes, so no code of
        the directory runs, trusted or not."""
        model_dir = Path(model_dir)
        config = VilaConfig.from_pretrained(str(model_dir))
        layout = FrameLayout.of(config)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "llm"))
        if config.chat_template is not None:
            tokenizer.chat_template = _CHAT_TEMPLATES[config.chat_template]

        def ids(text: str | None) -> tuple[int, ...]:
            return () if text is None else tuple(tokenizer(text, add_special_tokens=False)["input_ids"])

        return VilaProcessor(tokenizer, AutoImageProcessor.from_pretrained(str(model_dir / "vision_tower")),
                             layout.features, ids(layout.start_text), ids(layout.end_text))

    def load_model(self, model_dir: str | Path, dtype: torch.dtype = torch.float32,
                   trust_remote_code: bool = False) -> VilaModel:
        model_dir = Path(model_dir)
        config = VilaConfig.from_pretrained(str(model_dir))
        FrameLayout.of(config)  # refuse what is not reproduced before loading any weights
        if _carries_remote_code(model_dir):
            require_trust(model_dir, trust_remote_code, remote_code_files(model_dir))
            parts = _load_remote_parts(model_dir)
        else:
            parts = _load_parts(model_dir, config, dtype)
        return self.prepare_model(_assemble(model_dir, config, parts, dtype))

    def build_empty_model(self, model_dir: str | Path, dtype: torch.dtype,
                          trust_remote_code: bool = False) -> VilaModel:
        """The parts from config.json's ``llm_cfg`` / ``vision_tower_cfg`` / ``mm_projector_cfg`` (an actor checkpoint's
        ``huggingface/`` has config.json and the tokenizer under ``llm/``, no part directories with weights), with
        the LLM's generation config where :meth:`load_model` finds it (``llm/``, else the top).

        Refused for a directory that :meth:`load_model` would load through VILA's own code (``trust_remote_code``):
        that code's parts are its own classes, which this adapter cannot build without their weights."""
        model_dir = Path(model_dir)
        if trust_remote_code and _carries_remote_code(model_dir):
            raise ValueError(f"{model_dir} is loaded through VILA's own code (trust_remote_code), whose model cannot "
                             "be built without its weights here; load it with its weights on every rank "
                             "(worker.actor.fsdp.enable_rank0_init=false, worker.ref.fsdp.enable_rank0_init=false)")
        config = VilaConfig.from_pretrained(str(model_dir))
        FrameLayout.of(config)
        with no_init_weights():
            llm = AutoModelForCausalLM.from_config(config.llm_cfg, dtype=dtype)
            tower = AutoModel.from_config(config.vision_tower_cfg, dtype=dtype)
            projector = MultimodalProjector(config.mm_projector_cfg["mm_projector_type"], tower.config.hidden_size,
                                            llm.config.hidden_size)
        generation_config = (ModelAdapter.load_generation_config(self, model_dir / "llm")
                             or self.load_generation_config(model_dir))
        finish_empty_model(llm, generation_config)
        llm.config.name_or_path = str(model_dir / "llm")  # as loading it from there records
        model = _assemble(model_dir, config, (llm, VisionTower(tower, config.mm_vision_select_layer), projector), dtype)
        return self.prepare_model(model)

    def save_model(self, model: VilaModel, out_dir: str | Path) -> None:
        """VILA's layout (see :func:`save_vila_parts`), which this adapter and VILA's own code load."""
        save_vila_parts(model, Path(out_dir))

    def load_generation_config(self, model_dir: str | Path) -> GenerationConfig | None:
        """The top's ``generation_config.json``, else ``llm/``'s: VILA's own save writes it only with the LLM."""
        return (super().load_generation_config(model_dir)
                or super().load_generation_config(Path(model_dir) / "llm"))

    def encode(self, processor: VilaProcessor, messages: list[dict[str, Any]],
               video: DecodedVideo | None) -> dict[str, torch.Tensor]:
        """Token ids with the video placeholder expanded frame by frame (see the module docstring), and the frames
        as the image processor sizes and normalises them: ``pixel_values_videos`` ``(frames, 3, S, S)``,
        ``video_grid_thw`` ``[[frames, 1, 1]]``."""
        ids = self.render_prompt_ids(processor, messages)
        videos = sum(1 for message in messages if not isinstance(message["content"], str)
                     for item in message["content"] if item.get("type") == "video")
        if video is None:
            if videos:
                raise ValueError(f"messages hold {videos} video item(s) but no video was given")
            return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        if videos != 1:
            raise ValueError(f"messages must hold exactly one {{'type': 'video'}} item for video {video.path}, "
                             f"found {videos}")
        if video.frames.ndim != 4 or video.frames.shape[-1] != 3:
            raise ValueError(f"frames of {video.path} must have shape (T, H, W, 3), got {tuple(video.frames.shape)}")
        at = ids.index(processor.video_token_id)
        ids = ids[:at] + processor.frame_ids() * len(video.frames) + ids[at + 1:]
        pixels = processor.image_processor(images=list(video.frames), return_tensors="pt")["pixel_values"]
        return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
                "pixel_values_videos": pixels, "video_grid_thw": torch.tensor([[len(video.frames), 1, 1]])}

    def render_prompt_ids(self, processor: VilaProcessor, messages: list[dict[str, Any]]) -> list[int]:
        """VILA's prompt: each message's content as one string (``<vila/video>`` for the video, then the text),
        through the tokenizer's chat template."""
        text = processor.tokenizer.apply_chat_template(_vila_messages(messages), tokenize=False,
                                                       add_generation_prompt=True)
        return processor.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_video_tokens(self, processor: VilaProcessor, frame_times: np.ndarray, height: int, width: int) -> int:
        """Every frame is resized to the tower's square, so only the frame count matters."""
        return len(frame_times) * processor.tokens_per_frame

    def vision_tower(self, model: VilaModel) -> FrameEncoder:
        return model.frame_encoder

    def video_encoder(self, model: VilaModel) -> VilaVideoEncoder:
        return VilaVideoEncoder(model)

    def video_placeholder_id(self, model: VilaModel) -> int:
        return model.config.video_token_id

    def encoder_kwargs(self, model: VilaModel, features: torch.Tensor,
                       placeholder_tokens: torch.Tensor) -> dict[str, Any]:
        return {"video_features": features}


class VilaVideoEncoder:
    """:class:`VilaModel`'s frame encoder as MR-SP's :class:`~longrl.mrsp.encode.VideoEncoder`: one frame per
    temporal slice. Calls go through ``get_video_features``, which FSDP gathers the root's parameters for."""

    media_keys = (("pixel_values_videos", "video_grid_thw"),)

    def __init__(self, model: VilaModel):
        self.model = model

    def __call__(self, pixels: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        return self.model.get_video_features(pixels, grid_thw, return_dict=False)

    def num_tokens(self, grid_thw: torch.Tensor) -> torch.Tensor:
        return grid_thw[:, 0] * self.model.frame_features

    def dummy_inputs(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        side = self.model.image_size
        return torch.zeros(1, 3, side, side, device=device), torch.tensor([[1, 1, 1]], device=device)


def _vila_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """HF content lists as VILA's string contents: media tokens in place of video items, text as it is (media tokens
    written in the text removed, as VILA removes them), each content stripped."""
    converted = []
    for message in messages:
        items = [{"type": "text", "text": message["content"]}] if isinstance(message["content"], str) \
            else message["content"]
        parts = []
        for item in items:
            if item.get("type") == "video":
                parts.append(MEDIA_TOKENS["video"])
            elif item.get("type") == "text":
                text = item["text"]
                for token in MEDIA_TOKENS.values():
                    text = text.replace(token, "")
                parts.append(text)
            else:
                raise ValueError(f"model family 'vila' takes text and a video; a {message['role']} message holds a "
                                 f"{item.get('type')!r} item")
        converted.append({"role": message["role"], "content": "".join(parts).strip()})
    return converted


def _carries_remote_code(model_dir: Path) -> bool:
    """Whether config.json maps ``AutoModel`` to a module file present in ``model_dir`` (VILA's own code)."""
    auto_map = json.loads((model_dir / "config.json").read_text()).get("auto_map", {})
    target = auto_map.get("AutoModel")
    return target is not None and (model_dir / f"{target.rsplit('.', 1)[0]}.py").is_file()


def _load_remote_parts(model_dir: Path) -> tuple[nn.Module, ...]:
    """The LLM, tower and projector of the model VILA's own code builds from ``model_dir`` (on the CPU; VILA's code
    moves its parts to CUDA unless told a CPU device map)."""
    model = AutoModel.from_pretrained(str(model_dir), trust_remote_code=True, device_map="cpu")
    missing = [name for name in _PARTS if getattr(model, name, None) is None]
    if missing:
        raise ValueError(f"{type(model).__name__} loaded from {model_dir} has no {missing}: a VILA model holds "
                         f"{list(_PARTS)}")
    return tuple(getattr(model, name) for name in _PARTS)


def _assemble(model_dir: Path, config: VilaConfig, parts: tuple[nn.Module, ...], dtype: torch.dtype) -> VilaModel:
    """:class:`VilaModel` over ``parts`` (llm, tower, projector), in ``dtype``, with the media token ids of the
    tokenizer in ``model_dir / "llm"`` (VILA's config.json does not name them)."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "llm"))
    config.video_token_id = tokenizer.convert_tokens_to_ids(MEDIA_TOKENS["video"])
    config.image_token_id = tokenizer.convert_tokens_to_ids(MEDIA_TOKENS["image"])
    return VilaModel(config, *parts).to(dtype)


def save_vila_parts(model: VilaModel, out_dir: Path) -> None:
    """Write ``model`` as VILA's own ``save_pretrained`` does: ``llm/`` (the LLM's config, generation config and
    weights), ``vision_tower/`` (the SigLIP model's), ``mm_projector/`` (``mm_projector_cfg`` and the ``layers.*``
    weights) and config.json at the top naming the parts' configs. The tokenizer (``llm/``) and image processor
    (``vision_tower/``) are the caller's."""
    model.llm.save_pretrained(str(out_dir / "llm"), safe_serialization=True)
    model.vision_tower.vision_tower.save_pretrained(str(out_dir / "vision_tower"), safe_serialization=True)
    projector_dir = out_dir / "mm_projector"
    projector_dir.mkdir(parents=True, exist_ok=True)
    (projector_dir / "config.json").write_text(json.dumps(model.config.mm_projector_cfg, indent=2))
    save_file({name: tensor.contiguous() for name, tensor in model.mm_projector.state_dict().items()},
              str(projector_dir / "model.safetensors"))
    config = copy.deepcopy(model.config)
    config.llm_cfg, config.vision_tower_cfg = model.llm.config, model.vision_tower.vision_tower.config
    config.video_token_id = config.image_token_id = None  # the tokenizer's, set at load; not in VILA's file
    config.save_pretrained(str(out_dir))


def _load_parts(model_dir: Path, config: VilaConfig, dtype: torch.dtype) -> tuple[nn.Module, ...]:
    """The parts from ``llm/``, ``vision_tower/`` and ``mm_projector/`` with transformers' classes and
    :class:`MultimodalProjector` (strict: every projector weight present, none unknown)."""
    llm = AutoModelForCausalLM.from_pretrained(str(model_dir / "llm"), dtype=dtype)
    tower = SiglipVisionModel.from_pretrained(str(model_dir / "vision_tower"), dtype=dtype)
    projector = MultimodalProjector(config.mm_projector_cfg["mm_projector_type"], tower.config.hidden_size,
                                    llm.config.hidden_size)
    projector.load_state_dict(load_file(str(model_dir / "mm_projector" / "model.safetensors")))
    return llm, VisionTower(tower, config.mm_vision_select_layer), projector


def build_tiny_vila(out_dir: str | Path, seed: int, projector_type: str) -> Path:
    """A tiny VILA directory in VILA's layout (a real Qwen2ForCausalLM, SiglipVisionModel and projector, randomly
    initialised from ``seed``), with ``projector_type`` one of the downsampling types (NVILA-Lite:
    ``mlp_downsample_3x3_fix``; LongVILA: ``mlp_downsample``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir / "llm", named_tokens={"image_token": MEDIA_TOKENS["image"],
                                                               "video_token": MEDIA_TOKENS["video"]},
                                chat_template=CHAT_TEMPLATE)
    token_ids = QwenTokenIds.from_tokenizer(tokenizer)
    # Untied, like LongVILA-7B's Qwen2-7B.
    llm_config = Qwen2Config(**tiny_text_config_kwargs(token_ids, mrope=False), tie_word_embeddings=False,
                             dtype="float32")
    llm = random_model(Qwen2ForCausalLM, llm_config, token_ids, seed)
    vision_config = SiglipVisionConfig(**_TINY_VISION)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tower = SiglipVisionModel(vision_config)
        projector = MultimodalProjector(projector_type, vision_config.hidden_size, llm_config.hidden_size)
    projector_config = {"mm_projector_type": projector_type, "model_type": "v2l_projector",
                        "architectures": ["MultimodalProjector"]}
    config = VilaConfig(llm_cfg=llm_config, vision_tower_cfg=vision_config,
                        mm_projector_cfg=projector_config, architectures=["LlavaLlamaModel"],
                        hidden_size=llm_config.hidden_size, mm_hidden_size=vision_config.hidden_size,
                        model_dtype="torch.float32", num_video_frames=8, chat_template="qwen2")
    save_vila_parts(VilaModel(config, llm, VisionTower(tower, config.mm_vision_select_layer), projector), out_dir)
    llm.generation_config.save_pretrained(str(out_dir))
    side = vision_config.image_size
    SiglipImageProcessor(size={"height": side, "width": side}).save_pretrained(str(out_dir / "vision_tower"))
    return out_dir
