"""Load a Hugging Face model and shard it with FSDP2 (``fully_shard``), the same way on CPU/gloo and GPU/NCCL.

Each block named in the model's ``_no_split_modules`` (decoder layers, vision blocks) becomes its own FSDP unit so
only one block's full parameters exist at a time, then the root takes what is left (embeddings, head, norms).
Mixed precision follows ``worker.*.fsdp.mp_*_dtype`` on GPU (``mp_buffer_dtype``: floating buffers such as the
rotary frequencies are cast to it, since FSDP2's policy covers parameters only); on CPU everything stays float32,
since CPU bf16 matmuls are slow and the CPU runs are the numerical references; CPU offload applies on GPU only.
"""

from __future__ import annotations

import torch
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

from longrl.config.schema import FSDPConfig, LoraConfig, OffloadConfig
from longrl.models.lora import add_lora
from longrl.models.registry import ModelAdapter

_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
           "fp32": torch.float32, "float32": torch.float32}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}") from None


def load_sharded_model(
    adapter: ModelAdapter,
    model_path: str,
    fsdp: FSDPConfig,
    offload: OffloadConfig,
    device: torch.device,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
    lora: LoraConfig | None = None,
    lora_seed: int = 0,
) -> torch.nn.Module:
    """The model at ``model_path`` on ``device``, sharded over the default process group; with ``lora`` (rank > 0)
    it carries LoRA adapters, initialised from ``lora_seed`` so that every rank shards the same initial values."""
    on_gpu = device.type == "cuda"
    load_dtype = parse_dtype(fsdp.torch_dtype) if (fsdp.torch_dtype and on_gpu) else torch.float32
    model = adapter.load_model(model_path, dtype=load_dtype, trust_remote_code=trust_remote_code).to(device)
    if on_gpu:
        cast_floating_buffers(model, parse_dtype(fsdp.mp_buffer_dtype))
    if lora is not None and lora.rank > 0:
        with torch.random.fork_rng(devices=[device] if on_gpu else []):
            torch.manual_seed(lora_seed)
            add_lora(model, lora.rank, lora.alpha, lora.target_modules, lora.exclude_modules,
                     key="worker.actor.model.lora")
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    shard_model(model, fsdp, offload, device)
    # MR-SP stage 1 calls the towers through these methods, outside forward: FSDP must gather the root's parameters
    # (patch embedding, merger) for them as it does for forward, and run the root's lazy initialisation first.
    for method in ("get_video_features", "get_audio_features"):
        if hasattr(model, method):
            register_fsdp_forward_method(model, method)
    return model


def cast_floating_buffers(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Every floating-point buffer of ``model`` in ``dtype``, in place (integer buffers, e.g. position ids, stay)."""
    for module in model.modules():
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and buffer.is_floating_point():
                setattr(module, name, buffer.to(dtype))


def shard_model(model: torch.nn.Module, fsdp: FSDPConfig, offload: OffloadConfig, device: torch.device) -> None:
    """Shard ``model`` (already on ``device``) in place: one FSDP unit per block its ``_no_split_modules`` names (a
    transformers or diffusers model), then the root."""
    on_gpu = device.type == "cuda"
    kwargs: dict = {}
    if on_gpu:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=parse_dtype(fsdp.mp_param_dtype),
                                                   reduce_dtype=parse_dtype(fsdp.mp_reduce_dtype))
    if on_gpu and (offload.offload_params or fsdp.enable_cpu_offload):  # on a CPU the params already live there
        kwargs["offload_policy"] = CPUOffloadPolicy()
    block_names = set(getattr(model, "_no_split_modules", None) or ())
    # Innermost blocks first: where named blocks nest (Qwen2.5-Omni names its towers and their layers), a block's
    # parameters must not already be claimed by an enclosing unit when its own unit is made.
    for module in reversed(list(model.modules())):
        if type(module).__name__ in block_names:
            fully_shard(module, reshard_after_forward=fsdp.enable_full_shard, **kwargs)
    fully_shard(model, reshard_after_forward=fsdp.enable_full_shard, **kwargs)
