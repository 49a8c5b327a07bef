"""The registry of model-family adapters: the one place the rest of longrl asks "how do I drive this model?".

Each family is one adapter file in ``longrl/models/`` defining a ``ModelAdapter`` subclass, plus one line in
``BUILTIN_ADAPTERS`` (family -> ``"module:Class"`` and the checkpoint model types it serves). A module is imported on
the first lookup of its own family only, so one adapter that fails to import (a transformers class its version lacks)
breaks that family and no other. Adapters from outside the package register with ``@register_adapter``.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, GenerationConfig
from transformers.initialization import no_init_weights
from transformers.utils import GENERATION_CONFIG_NAME

from longrl.models.input_keys import InputKeys
from longrl.models.remote_code import announce_remote_code

if TYPE_CHECKING:
    import numpy as np

    from longrl.data.video import DecodedVideo
    from longrl.mrsp.audio import AudioEncoder
    from longrl.mrsp.encode import VideoEncoder


class ModelAdapter(ABC):
    """How to build, load and feed one model family; stateless, so one instance serves every caller.

    ``family`` is the name configs use; ``model_types`` are the Hugging Face ``config.model_type`` values
    whose checkpoints this adapter drives; ``supports_video`` says whether ``encode`` accepts a video;
    ``positions_3d`` whether its vision tokens are positioned in 3-D.
    """

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    supports_video: ClassVar[bool]
    # Whether ``encode`` takes a row's images (``images=``); rows with images are refused for other families.
    supports_images: ClassVar[bool] = False
    # Whether ``encode`` takes a row's audio (``audio=``: mono float32 samples at ``audio_sampling_rate`` Hz, one per
    # ``{'type': 'audio'}`` item); rows with audio are refused for other families.
    supports_audio: ClassVar[bool] = False
    audio_sampling_rate: ClassVar[int | None] = None
    # Whether vision tokens get 3-D (mrope) positions from their grid; then a prompt must reach an engine as token
    # ids + grid, never as bare embeddings (which engines position as text).
    positions_3d: ClassVar[bool] = False
    # A substring of the checkpoint names of the vision tower's tensors (the embedding cache fingerprints them).
    vision_weight_marker: ClassVar[str | None] = None
    # Whether ``encode_from_cache`` rebuilds the family's prompt for a cached video, i.e. the embedding cache serves it.
    serves_embedding_cache: ClassVar[bool] = False
    # Frame and image sides are resized to multiples of this many pixels (the side one visual token covers, merges
    # included), so the vision grid tiles them exactly; None for families without vision.
    video_size_factor: ClassVar[int | None] = None
    # Pixels of video per visual token (the temporal patch included): worker.rollout.tokens_per_frame times this bounds
    # a frame's pixels.
    video_pixels_per_token: ClassVar[int | None] = None
    # The names of the per-row inputs ``encode`` gives beside the token ids, by medium (none for text families).
    input_keys: ClassVar[InputKeys] = InputKeys()
    # The Hugging Face config attributes naming the media placeholder and delimiter token ids (see media_token_ids).
    media_token_attributes: ClassVar[tuple[str, ...]] = ()
    # The model config's sub-configs (attribute names) whose towers attend within cu_seqlens chunks (frames, windows,
    # audio chunks): loaded with "sdpa", they take longrl's varlen attention, one kernel call per layer on CUDA where
    # stock "sdpa" makes one call per chunk (see longrl.models.vision_attention).
    varlen_attention_configs: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def build_tiny(self, out_dir: str | Path, seed: int = 0) -> Path:
        """Write a tiny, randomly initialised (seeded) model directory loadable offline; return its path."""

    @abstractmethod
    def load_processor(self, model_dir: str | Path, trust_remote_code: bool = False) -> Any:
        """Load the processor (the tokenizer for text-only families) saved in ``model_dir``; the directory's own Python
        code runs only with ``trust_remote_code`` (see :mod:`longrl.models.remote_code`)."""

    @abstractmethod
    def load_model(self, model_dir: str | Path, dtype: torch.dtype = torch.float32,
                   trust_remote_code: bool = False) -> torch.nn.Module:
        """Load the model in ``model_dir`` with its Auto class, in ``dtype``, and :meth:`prepare_model` it; the
        directory's own Python code runs only with ``trust_remote_code``."""

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """What :meth:`load_model` and :meth:`build_empty_model` end with, so that a model built without its weights
        behaves as the loaded one: the towers of ``varlen_attention_configs`` on the varlen attention, then the
        family's :meth:`patch_model`. Returns ``model``."""
        # Imported here: it loads transformers' modeling code, which ``import longrl`` must not (the torchvision shim
        # and the hub-kernel default come first).
        from longrl.models.vision_attention import use_varlen_attention

        use_varlen_attention(model.config, self.varlen_attention_configs)
        return self.patch_model(model)

    def patch_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the family changes on a model it has just built (how it positions tokens, takes precomputed encoder
        features, ...), in place; returns ``model``. By default nothing."""
        return model

    # ----- the model without its weights: the merger, and rank-0 initialisation ---------------------------------------
    def build_empty_model(self, model_dir: str | Path, dtype: torch.dtype,
                          trust_remote_code: bool = False) -> torch.nn.Module:
        """The model :meth:`load_model` gives for ``model_dir`` (same classes, config, generation config and
        :meth:`prepare_model` changes, in ``dtype``) without reading its weights: allocated but not initialised (tied
        weights already sharing storage), or not allocated at all when called under ``torch.device("meta")``.

        Two callers: the checkpoint merger fills every tensor from an actor checkpoint, whose ``huggingface/`` holds
        configs and tokenizer files but no weights, so initialising a real-size model would be wasted time; with
        ``worker.{actor,ref}.fsdp.enable_rank0_init`` every rank builds the model on the meta device and receives its
        weights from rank 0 after sharding (:func:`longrl.workers.fsdp.load_sharded_model`). By default the Auto class
        of the family's kind (image-text-to-text for video families, causal LM otherwise) from config.json.
        """
        announce_remote_code(model_dir, trust_remote_code)
        auto_class = AutoModelForImageTextToText if self.supports_video else AutoModelForCausalLM
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
        with no_init_weights():
            model = auto_class.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
        return self.prepare_model(finish_empty_model(model, self.load_generation_config(model_dir)))

    def save_model(self, model: torch.nn.Module, out_dir: str | Path) -> None:
        """Write ``model``'s configs, generation config and weights (safetensors) to ``out_dir`` in the layout
        :meth:`load_model` reads back; tokenizer and processor files are the caller's. By default
        ``save_pretrained``."""
        model.save_pretrained(str(out_dir), safe_serialization=True)

    def load_generation_config(self, model_dir: str | Path) -> GenerationConfig | None:
        """The checkpoint's generation config (its end-of-turn ids above all); None where it has none. By default
        ``generation_config.json`` at the top of ``model_dir``, where Hugging Face checkpoints keep it."""
        if not (Path(model_dir) / GENERATION_CONFIG_NAME).is_file():
            return None
        return GenerationConfig.from_pretrained(str(model_dir))

    def stop_token_ids(self, model_dir: str | Path, processor: Any) -> list[int]:
        """The ids generation stops at: the generation config's end-of-sequence ids (Qwen: ``<|im_end|>``,
        ``<|endoftext|>``), else the tokenizer's end-of-sequence token."""
        generation_config = self.load_generation_config(model_dir)
        stop = generation_config.eos_token_id if generation_config is not None else None
        if stop is None:
            stop = getattr(processor, "tokenizer", processor).eos_token_id
        if stop is None:
            raise ValueError(f"{model_dir} names no end-of-sequence token (neither a generation config nor the "
                             "tokenizer has one)")
        return [stop] if isinstance(stop, int) else list(stop)

    @abstractmethod
    def encode(
        self, processor: Any, messages: list[dict[str, Any]], video: DecodedVideo | None
    ) -> dict[str, torch.Tensor]:
        """Render ``messages`` (HF content lists) with the chat template plus a generation prompt and
        tokenise them with ``video``, expanding its placeholder to one token per merged patch.

        Returns a batch of one to pass whole to the model's forward: ``input_ids``, ``attention_mask`` and,
        for vision families, ``mm_token_type_ids`` (marks the vision tokens; Qwen-VL needs it to compute
        3-D mrope positions) plus, with a video, ``pixel_values_videos`` and ``video_grid_thw``
        (Qwen2.5-VL adds ``second_per_grid_ts``). ``video.frames`` are used as given: already sampled and
        already sized for the vision grid by the data layer. Families with ``supports_images`` also take
        ``images=`` (``(H, W, 3)`` uint8 arrays, sized likewise, one per ``{'type': 'image'}`` item in order).
        """

    def count_video_tokens(self, processor: Any, frame_times: np.ndarray, height: int, width: int) -> int:
        """Tokens that replace the video placeholder for frames at ``frame_times`` (seconds, one per sampled frame) of
        ``height`` x ``width`` (multiples of the size factor), counted without decoding pixels. ``processor`` is
        :meth:`load_processor`'s: where the count depends on the checkpoint (a tower of fixed resolution), it knows it;
        the times matter to families whose prompt shows them."""
        raise NotImplementedError(f"model family {self.family!r} takes no video")

    def count_image_tokens(self, height: int, width: int) -> int:
        """Visual tokens of one image of ``height`` x ``width`` (multiples of the size factor)."""
        raise NotImplementedError(f"model family {self.family!r} takes no images")

    def count_audio_tokens(self, num_samples: int) -> int:
        """Audio tokens of ``num_samples`` samples at ``audio_sampling_rate``."""
        raise NotImplementedError(f"model family {self.family!r} takes no audio")

    def encode_from_cache(self, processor: Any, messages: list[dict[str, Any]], positions: Mapping[str, torch.Tensor],
                          timestamps: np.ndarray | None) -> dict[str, torch.Tensor]:
        """:meth:`encode` for a video known only by what the embedding cache keeps of it (its features come from the
        cache): its position inputs (``input_keys.positions``: grid, ...) and its sampled frames' times. The same token
        ids, mask and position inputs :meth:`encode` gives for the decoded video, and no pixels."""
        raise NotImplementedError(f"model family {self.family!r} takes no cached video features")

    def vision_tower(self, model: torch.nn.Module) -> torch.nn.Module | None:
        """The module that encodes images/video (frozen by ``freeze_vision_tower``); None for text-only families."""
        return None

    # ----- MR-SP: how the family takes precomputed vision features and full-sequence positions --------------------
    def video_encoder(self, model: torch.nn.Module) -> VideoEncoder | None:
        """The vision tower as MR-SP stage 1 drives it; None for families without video."""
        return None

    def audio_encoder(self, model: torch.nn.Module) -> AudioEncoder | None:
        """The audio tower as MR-SP stage 1 drives it (its features follow a row's visual ones in ``video_embeds``);
        None for families without audio."""
        return None

    def video_placeholder_id(self, model: torch.nn.Module) -> int | None:
        """The token id whose positions receive video features; None for families without video."""
        return None

    def media_placeholder_ids(self, model: torch.nn.Module) -> tuple[int, ...]:
        """The token ids whose positions receive a row's precomputed visual features (``video_embeds``: one stream in
        placeholder order, e.g. a row's images' features then its video's); by default the video placeholder alone."""
        placeholder = self.video_placeholder_id(model)
        return () if placeholder is None else (placeholder,)

    def encoder_kwargs(self, model: torch.nn.Module, features: torch.Tensor,
                       placeholder_tokens: torch.Tensor) -> dict[str, Any]:
        """Forward keywords that splice precomputed visual ``features`` into ``model``'s prompt.

        ``features`` has one row per placeholder of the forward's input ids, in row-major order; ``placeholder_tokens``
        is the token id at each of those placeholders (so a family with several media kinds can route each row).
        """
        raise NotImplementedError(f"model family {self.family!r} takes no video features")

    def position_ids(self, model: torch.nn.Module, tokens: dict[str, torch.Tensor],
                     vision: dict[str, torch.Tensor]) -> torch.Tensor:
        """The position ids the model's own forward would use for ``tokens``, computed on the full sequence.

        Text families count columns from 0 (what their forward does without ``position_ids``; rotary attention only
        sees differences, so left padding does not matter).
        """
        input_ids = tokens["input_ids"]
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)

    def media_token_ids(self, config: Any) -> list[int]:
        """The model's media placeholder and delimiter ids (``config``: its Hugging Face config), never to be generated:
        a sampled placeholder (a random or young policy can draw one) would make the next forward over prompt +
        response expect features for media that do not exist."""
        ids = (getattr(config, name, None) for name in self.media_token_attributes)
        return [int(i) for i in ids if i is not None]

    def vllm_video_prompt(self, processor: Any, token_ids: list[int], features: torch.Tensor,
                          positions: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """A vLLM prompt of a row whose video features are precomputed: ``prompt_token_ids`` (``token_ids``, the prompt
        :meth:`encode` gave) with the video in the form vLLM's own processor for the family expands, and
        ``multi_modal_data`` holding ``features`` as the video's embeddings with what vLLM needs to place and position
        them (from the row's ``positions`` inputs and the prompt itself). vLLM's tower never runs."""
        raise NotImplementedError(f"model family {self.family!r} takes no precomputed video in the vLLM engine")

    def render_prompt_ids(self, processor: Any, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of the rendered chat with each media item still a single placeholder token.

        Cheap (no pixels): the dataset adds the media token counts to this to know a prompt's length before
        decoding its video.
        """
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        tokenizer = getattr(processor, "tokenizer", processor)
        return tokenizer(text, add_special_tokens=False)["input_ids"]


def finish_empty_model(model: torch.nn.Module, generation_config: GenerationConfig | None) -> torch.nn.Module:
    """``model`` (a transformers model built with its initialisation skipped) with its tied weights sharing storage,
    as loaded weights would have them, and ``generation_config`` (the directory's, as ``from_pretrained`` reads it)
    where the directory has one."""
    model.tie_weights()  # skipped with the initialisation; tied keys must share storage before weights are loaded
    if generation_config is not None:
        model.generation_config = generation_config
    return model


class BuiltinAdapter(NamedTuple):
    """Where a built-in family's adapter class lives (``"module:Class"``) and the model types it serves, known
    without importing it."""

    target: str
    model_types: tuple[str, ...]


BUILTIN_ADAPTERS: dict[str, BuiltinAdapter] = {
    "qwen2": BuiltinAdapter("longrl.models.qwen2:Qwen2Adapter", ("qwen2",)),
    "qwen3": BuiltinAdapter("longrl.models.qwen3:Qwen3Adapter", ("qwen3",)),
    "qwen2_vl": BuiltinAdapter("longrl.models.qwen2_vl:Qwen2VLAdapter", ("qwen2_vl",)),
    "qwen2_5_vl": BuiltinAdapter("longrl.models.qwen2_5_vl:Qwen2_5_VLAdapter", ("qwen2_5_vl",)),
    "qwen2_5_omni": BuiltinAdapter("longrl.models.qwen2_5_omni:Qwen2_5OmniAdapter",
                                   ("qwen2_5_omni_thinker", "qwen2_5_omni")),
    "vila": BuiltinAdapter("longrl.models.vila:VilaAdapter", ("llava_llama",)),
    "qwen3_vl": BuiltinAdapter("longrl.models.qwen3_vl:Qwen3VLAdapter", ("qwen3_vl",)),
}

_ADAPTERS: dict[str, ModelAdapter] = {}

AdapterT = TypeVar("AdapterT", bound=type[ModelAdapter])


def register_adapter(adapter_cls: AdapterT) -> AdapterT:
    """Class decorator for an adapter outside the package: register one instance of ``adapter_cls`` under its
    ``family``.

    A family name or an HF model type may belong to one adapter class only (built-in ones included); registering the
    same class again (a module imported twice, or a built-in family's own class) is a no-op.
    """
    family = adapter_cls.family
    builtin = BUILTIN_ADAPTERS.get(family)
    if builtin is not None and builtin.target == _target(adapter_cls):
        get_adapter(family)
        return adapter_cls
    existing = _ADAPTERS.get(family)
    if existing is not None and _target(type(existing)) == _target(adapter_cls):
        return adapter_cls
    if existing is not None or builtin is not None:
        owner = type(existing).__qualname__ if existing is not None else builtin.target.rsplit(":", 1)[1]
        raise ValueError(
            f"model family {family!r} is already registered by {owner}; "
            f"{adapter_cls.__qualname__} needs a different family name"
        )
    for other, model_types in _served_model_types().items():
        shared = set(model_types) & set(adapter_cls.model_types)
        if shared:
            raise ValueError(
                f"model type(s) {sorted(shared)} of {adapter_cls.__qualname__} are already served by "
                f"family {other!r}"
            )
    _ADAPTERS[family] = adapter_cls()
    return adapter_cls


def _served_model_types() -> dict[str, tuple[str, ...]]:
    """Family -> the model types it serves, for every built-in and registered family."""
    served = {name: entry.model_types for name, entry in BUILTIN_ADAPTERS.items()}
    served.update({name: tuple(adapter.model_types) for name, adapter in _ADAPTERS.items()})
    return served


def _target(adapter_cls: type) -> str:
    return f"{adapter_cls.__module__}:{adapter_cls.__qualname__}"


def _load_builtin(family: str) -> ModelAdapter:
    """Import the module of built-in ``family`` (only it) and instantiate its adapter class."""
    entry = BUILTIN_ADAPTERS[family]
    module_name, class_name = entry.target.split(":")
    adapter_cls = getattr(importlib.import_module(module_name), class_name)
    if (adapter_cls.family, tuple(adapter_cls.model_types)) != (family, entry.model_types):
        raise ValueError(f"{entry.target} declares family {adapter_cls.family!r} and model types "
                         f"{adapter_cls.model_types}, but BUILTIN_ADAPTERS lists it as {family!r} with "
                         f"{entry.model_types}")
    _ADAPTERS[family] = adapter_cls()
    return _ADAPTERS[family]


def registered_families() -> tuple[str, ...]:
    """The family names that ``get_adapter`` accepts, sorted (nothing is imported)."""
    return tuple(sorted({*BUILTIN_ADAPTERS, *_ADAPTERS}))


def get_adapter(family: str) -> ModelAdapter:
    """The adapter registered under ``family``; an unknown name raises ``ValueError`` listing the known ones."""
    if family in _ADAPTERS:
        return _ADAPTERS[family]
    if family in BUILTIN_ADAPTERS:
        return _load_builtin(family)
    raise ValueError(f"unknown model family {family!r}; registered families: {', '.join(registered_families())}")


def adapter_for_model_dir(model_dir: str | Path) -> ModelAdapter:
    """The adapter serving the checkpoint in ``model_dir``, chosen by ``model_type`` in its config.json."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: {model_dir} is not a Hugging Face model directory")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type is None:
        raise ValueError(f"{config_path} has no 'model_type' key, so no adapter can be chosen for {model_dir}")
    served = _served_model_types()
    for family, model_types in served.items():
        if model_type in model_types:
            return get_adapter(family)
    supported = sorted(t for model_types in served.values() for t in model_types)
    raise ValueError(
        f"no adapter for model directory {model_dir}: model_type {model_type!r} is not supported; "
        f"supported model types: {', '.join(supported)}"
    )
